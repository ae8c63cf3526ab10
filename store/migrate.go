package store

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"strings"
	"testing/fstest"
	"time"

	"github.com/keel-go/keel/internal/dialect"
)

// Migration is one versioned change to keel's schema, rendered for a
// Store's dialect and table prefix.
type Migration struct {
	// Version numbers migrations from 1, in the order they apply.
	Version int
	// Name is the migration's file name without extension, such as
	// "0001_init".
	Name string
	// SQL is the change itself: statements separated by semicolons at line
	// ends.
	SQL string
}

// Migrations returns keel's schema changes for the Store's dialect and
// prefix, oldest first. Teams that own their migrations apply them with
// their own tool (see MigrationFS); Migrate applies them itself.
func (s *Store) Migrations() ([]Migration, error) {
	ms, err := dialect.ReadMigrations(s.d.Migrations(), s.prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Migration, len(ms))
	for i, m := range ms {
		out[i] = Migration(m)
	}
	return out, nil
}

func (s *Store) sql() dialect.SQL { return dialect.Render(s.d, s.d.SQL(), s.prefix) }

// prepare checks the session and returns the migrations and statements
// Migrate and CheckSchema work with.
func (s *Store) prepare(ctx context.Context) ([]Migration, dialect.SQL, error) {
	if err := s.checkSession(ctx); err != nil {
		return nil, dialect.SQL{}, err
	}
	ms, err := s.Migrations()
	return ms, s.sql(), err
}

// Migrate creates or upgrades keel's tables (aggregates, outbox, leases,
// inbox, idempotency keys) and records each applied version in the
// migrations table. It is idempotent and safe to run from several
// processes at once: the dialect serialises migrators (an advisory lock on
// PostgreSQL, the write lock on SQLite, a named lock on MySQL).
func (s *Store) Migrate(ctx context.Context) error {
	ms, q, err := s.prepare(ctx)
	if err != nil {
		return err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("keel: migrate: %w", err)
	}
	defer conn.Close()
	end, err := s.d.BeginMigration(ctx, conn, s.prefix)
	if err != nil {
		return fmt.Errorf("keel: migrate: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = end(false)
		}
	}()
	if _, err := conn.ExecContext(ctx, q.MigrationsCreate); err != nil {
		return fmt.Errorf("keel: migrate: create %s: %w", s.Table("migrations"), err)
	}
	applied, err := appliedVersions(ctx, conn, q.MigrationsApplied)
	if err != nil {
		return fmt.Errorf("keel: migrate: read %s: %w", s.Table("migrations"), err)
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for _, stmt := range dialect.SplitStatements(m.SQL) {
			// Adding a column that exists is the one change SQLite and
			// MySQL cannot make conditional in SQL; it ran before, when
			// the migrations table was lost or the column was added by hand.
			if _, err := conn.ExecContext(ctx, stmt); err != nil && s.d.Classify(err) != dialect.DuplicateColumn {
				return fmt.Errorf("keel: migration %s: %w", m.Name, err)
			}
		}
		if _, err := conn.ExecContext(ctx, q.MigrationsRecord, m.Version, m.Name, s.d.Time(time.Now())); err != nil {
			return fmt.Errorf("keel: migration %s: record it: %w", m.Name, err)
		}
	}
	if err := end(true); err != nil {
		return fmt.Errorf("keel: migrate: commit: %w", err)
	}
	committed = true
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func appliedVersions(ctx context.Context, q querier, query string) (map[int]bool, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

// CheckSchema returns an error wrapping ErrNotMigrated unless every
// migration this version of keel ships is recorded as applied and every
// keel table has the columns keel uses. It also refuses server settings
// that would break a guarantee (on MySQL, an isolation level that reads
// uncommitted rows). It suits a readiness check, and teams that apply
// Migrations with their own tool.
func (s *Store) CheckSchema(ctx context.Context) error {
	ms, q, err := s.prepare(ctx)
	if err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, s.db, q.MigrationsApplied)
	if err != nil {
		if s.d.Classify(err) == dialect.MissingTable {
			return fmt.Errorf("%w: table %s does not exist", ErrNotMigrated, s.Table("migrations"))
		}
		return fmt.Errorf("keel: check schema: %w", err)
	}
	var missing []string
	for _, m := range ms {
		if !applied[m.Version] {
			missing = append(missing, m.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: migrations not applied: %s", ErrNotMigrated, strings.Join(missing, ", "))
	}
	for _, t := range dialect.Schema {
		if err := s.checkColumns(ctx, t.Table, t.Columns); err != nil {
			return err
		}
	}
	var leases int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.Table("outbox_leases")).Scan(&leases); err != nil {
		return fmt.Errorf("keel: check schema: %w", err)
	}
	if leases != dialect.Partitions {
		return fmt.Errorf("%w: %s has %d rows, want one per partition (%d); apply migration 0005", ErrNotMigrated, s.Table("outbox_leases"), leases, dialect.Partitions)
	}
	return nil
}

// checkSession lets the dialect refuse server settings that would break a
// guarantee.
func (s *Store) checkSession(ctx context.Context) error {
	if c, ok := s.d.(dialect.SessionChecker); ok {
		return c.CheckSession(ctx, s.db)
	}
	return nil
}

// checkColumns returns an error wrapping ErrNotMigrated unless table
// exists with every one of columns (a comma-separated list).
func (s *Store) checkColumns(ctx context.Context, table, columns string) error {
	name := s.Table(table)
	rows, err := s.db.QueryContext(ctx, "SELECT * FROM "+name+" WHERE 1 = 0")
	if err != nil {
		return fmt.Errorf("%w: table %s: %v", ErrNotMigrated, name, err)
	}
	have, err := rows.Columns()
	rows.Close()
	if err != nil {
		return fmt.Errorf("keel: check schema: %s: %w", name, err)
	}
	got := make(map[string]bool, len(have))
	for _, c := range have {
		got[strings.ToLower(c)] = true
	}
	var missing []string
	for _, c := range strings.Split(columns, ", ") {
		if !got[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: table %s lacks columns %s", ErrNotMigrated, name, strings.Join(missing, ", "))
	}
	return nil
}

// MigrationFormat is a file layout for MigrationFS.
type MigrationFormat int

const (
	// Plain lays out one file per migration, NNNN_name.sql, holding its
	// statements, for scripts and tools that run plain SQL files in name
	// order (psql -f, sqlite3 .read, a deployment's own runner).
	Plain MigrationFormat = iota
	// Goose lays out NNNN_name.sql files with pressly/goose's "-- +goose Up"
	// annotation.
	Goose
	// GolangMigrate lays out NNNN_name.up.sql files, as golang-migrate
	// expects.
	GolangMigrate
)

// MigrationFS returns Migrations as files in the layout a migration tool
// expects. Each file also creates keel's migrations table if needed and
// records its own version there, so CheckSchema passes once a tool has
// applied them all, and Migrate, run later, skips them.
func (s *Store) MigrationFS(format MigrationFormat) (fs.FS, error) {
	ms, err := s.Migrations()
	if err != nil {
		return nil, err
	}
	if format < Plain || format > GolangMigrate {
		return nil, dialect.Invalid("MigrationFS: unknown format %d; use store.Plain, store.Goose or store.GolangMigrate", format)
	}
	q := s.sql()
	fsys := fstest.MapFS{}
	for _, m := range ms {
		var b strings.Builder
		name := m.Name + ".sql"
		switch format {
		case Goose:
			b.WriteString("-- +goose Up\n")
		case GolangMigrate:
			name = m.Name + ".up.sql"
		}
		b.WriteString(q.MigrationsCreate + ";\n")
		b.WriteString(strings.TrimSpace(m.SQL) + "\n")
		fmt.Fprintf(&b, q.MigrationsLiteral+"\n", m.Version, "'"+m.Name+"'")
		fsys[name] = &fstest.MapFile{Data: []byte(b.String()), Mode: 0o444}
	}
	return fsys, nil
}
