package dialect

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrationFS embed.FS

// ErrNotMigrated is returned when a keel table is missing. Public packages
// re-export it so errors.Is works with whichever name the caller uses.
var ErrNotMigrated = errors.New("keel: schema not migrated; run outbox.Migrate")

// Migration is one versioned schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the dialect's migrations in version order, with the
// table prefix substituted.
func (d *Dialect) Migrations(prefix string) ([]Migration, error) {
	dir := path.Join("migrations", d.Name)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("keel: migration file %s has no version number", name)
		}
		body, err := migrationFS.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: strings.ReplaceAll(string(body), "{{p}}", prefix)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// LatestVersion is the newest migration version shipped for d.
func (d *Dialect) LatestVersion() int {
	ms, _ := d.Migrations(DefaultPrefix)
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Migrate applies every migration not yet recorded in the prefix's
// migrations table. It is idempotent and safe to run from several processes
// at once: PostgreSQL serialises runs with an advisory lock, SQLite with an
// immediate (write-locking) transaction.
func (d *Dialect) Migrate(ctx context.Context, db *sql.DB, prefix string) error {
	prefix, err := Prefix(prefix)
	if err != nil {
		return err
	}
	ms, err := d.Migrations(prefix)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("keel: migrate: %w", err)
	}
	defer conn.Close()

	begin := "BEGIN"
	if d.Name == SQLite {
		begin = "BEGIN IMMEDIATE"
	}
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return fmt.Errorf("keel: migrate: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if d.Name == Postgres {
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "keel.migrate."+prefix); err != nil {
			return fmt.Errorf("keel: migrate: lock: %w", err)
		}
	}
	ts := "INTEGER"
	if d.Name == Postgres {
		ts = "TIMESTAMPTZ"
	}
	table := prefix + "migrations"
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+
		" (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at "+ts+" NOT NULL)"); err != nil {
		return fmt.Errorf("keel: migrate: create %s: %w", table, err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM "+table)
	if err != nil {
		return fmt.Errorf("keel: migrate: read %s: %w", table, err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for _, stmt := range splitStatements(m.SQL) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("keel: migration %s: %w", m.Name, err)
			}
		}
		if _, err := conn.ExecContext(ctx, d.Rebind("INSERT INTO "+table+" (version, name, applied_at) VALUES (?, ?, ?)"),
			m.Version, m.Name, d.Time(time.Now())); err != nil {
			return fmt.Errorf("keel: migration %s: record: %w", m.Name, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("keel: migrate: commit: %w", err)
	}
	committed = true
	return nil
}

// SchemaVersion returns the highest applied migration version for prefix, or
// an error wrapping ErrNotMigrated when the migrations table is missing.
func (d *Dialect) SchemaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, prefix string) (int, error) {
	var v sql.NullInt64
	err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM "+prefix+"migrations").Scan(&v)
	if IsMissingTable(err) {
		return 0, fmt.Errorf("%w (table %smigrations does not exist)", ErrNotMigrated, prefix)
	}
	if err != nil {
		return 0, err
	}
	return int(v.Int64), nil
}

// CheckSchema returns an error wrapping ErrNotMigrated unless every shipped
// migration has been applied for prefix.
func (d *Dialect) CheckSchema(ctx context.Context, db *sql.DB, prefix string) error {
	v, err := d.SchemaVersion(ctx, db, prefix)
	if err != nil {
		return err
	}
	if latest := d.LatestVersion(); v < latest {
		return fmt.Errorf("%w (schema version %d, this keel needs %d)", ErrNotMigrated, v, latest)
	}
	return nil
}

// MissingTable wraps err with ErrNotMigrated when it reports a missing table,
// naming the table; other errors are returned unchanged.
func MissingTable(err error, table string) error {
	if IsMissingTable(err) {
		return fmt.Errorf("%w: table %s is missing: %v", ErrNotMigrated, table, err)
	}
	return err
}

// splitStatements splits a migration on semicolons at line ends. Migrations
// keep one statement per terminated line group and no semicolons in literals.
func splitStatements(sqlText string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sqlText, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
