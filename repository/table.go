package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
)

// TableConfig configures a Table repository: which table and columns hold
// the aggregate, and how its fields map to them. Table, Type and New are
// required; the zero value of every other field is a useful default.
type TableConfig[T aggregate.Aggregate] struct {
	// Table is the application's table, as name or schema.name. Required.
	// Its primary key must be IDColumn.
	Table string
	// Type is the aggregate type name, as passed to aggregate.Root.Init,
	// such as "vehicle". Required.
	Type string
	// New returns an empty aggregate for Get to scan into, such as
	// func() *Vehicle { return new(Vehicle) }. Required.
	New func() T
	// IDColumn is the primary-key column holding the aggregate id. If
	// empty, "id" is used.
	IDColumn string
	// VersionColumn is the integer column holding the aggregate version. If
	// empty, "version" is used.
	VersionColumn string
	// Columns are the state columns, in the order Fields returns them; they
	// must not repeat IDColumn or VersionColumn.
	//
	// If Columns and Fields are both nil, they are derived from the fields
	// of T's struct that carry a `db:"column"` tag, sqlx's convention,
	// including those of embedded structs. This costs a little reflection
	// on every call; set Fields to avoid it.
	Columns []string
	// Fields returns pointers to a's fields that are stored in Columns, in
	// the same order: Save reads the values through them and Get scans into
	// them, so one function maps both ways. A field whose column needs a
	// conversion can point to a type implementing sql.Scanner and
	// driver.Valuer.
	Fields func(a T) []any
	// Dialect is "sqlite" or "postgres". If empty, it is detected from the
	// database driver (mattn/go-sqlite3, lib/pq or pgx's stdlib).
	Dialect string
}

// Table is a repository that stores aggregates in the application's own
// table, one column per field, with an id column and a version column. The
// table keeps its own unique and foreign-key constraints: a violation is
// returned as a *ConstraintError matching ErrUniqueViolation or
// ErrForeignKeyViolation. A Table is safe for concurrent use.
type Table[T aggregate.Aggregate] struct {
	core[T]
	fields  func(T) []any
	columns int

	insertSQL, updateSQL, deleteSQL string
	getSQL, getForUpdateSQL         string
	versionSQL, existsSQL           string
}

// NewTable returns a Table repository for aggregates of type T. It
// validates cfg, checking that every table and column name is a plain SQL
// identifier, and builds its statements, but does not touch the database.
func NewTable[T aggregate.Aggregate](db *sql.DB, cfg TableConfig[T]) (*Table[T], error) {
	c, err := newCore(db, cfg.Dialect, cfg.Type, cfg.New, "TableConfig")
	if err != nil {
		return nil, err
	}
	if cfg.Table == "" {
		return nil, errors.New("keel: TableConfig.Table is empty: set it to the name of the table holding the aggregates")
	}
	if err := dialect.ValidateQualifiedIdent("TableConfig.Table", cfg.Table); err != nil {
		return nil, err
	}
	c.table = cfg.Table
	idCol, versionCol := orDefault(cfg.IDColumn, "id"), orDefault(cfg.VersionColumn, "version")
	columns, fields := cfg.Columns, cfg.Fields
	switch {
	case columns == nil && fields == nil:
		if columns, fields, err = taggedFields[T](); err != nil {
			return nil, err
		}
	case fields == nil:
		return nil, errors.New("keel: TableConfig.Fields is nil: set it to a function returning pointers to the fields stored in Columns, in order")
	}
	if err := checkColumns(idCol, versionCol, columns); err != nil {
		return nil, err
	}
	if err := checkFields(cfg.New(), fields, len(columns)); err != nil {
		return nil, err
	}

	t, d := cfg.Table, c.d
	where := " WHERE " + idCol + " = ?"
	var sets, list, marks strings.Builder
	for _, col := range columns {
		sets.WriteString(col + " = ?, ")
		list.WriteString(", " + col)
		marks.WriteString(", ?")
	}
	r := &Table[T]{
		core:    c,
		fields:  fields,
		columns: len(columns),
		// ON CONFLICT on the id column alone: a taken id becomes zero
		// affected rows, reported as a conflict, while any other unique
		// constraint still fails as a *ConstraintError.
		insertSQL: d.Rebind("INSERT INTO " + t + " (" + idCol + ", " + versionCol + list.String() +
			") VALUES (?, 1" + marks.String() + ") ON CONFLICT (" + idCol + ") DO NOTHING"),
		updateSQL:  d.Rebind("UPDATE " + t + " SET " + sets.String() + versionCol + " = ?" + where + " AND " + versionCol + " = ?"),
		deleteSQL:  d.Rebind("DELETE FROM " + t + where + " AND " + versionCol + " = ?"),
		getSQL:     d.Rebind("SELECT " + versionCol + list.String() + " FROM " + t + where),
		versionSQL: d.Rebind("SELECT " + versionCol + " FROM " + t + where),
		existsSQL:  d.Rebind("SELECT 1 FROM " + t + where),
	}
	r.getForUpdateSQL = r.getSQL
	if d.IsPostgres() {
		r.getForUpdateSQL += " FOR UPDATE"
	}
	return r, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkColumns validates every column name and rejects repeats, which would
// otherwise surface as confusing SQL errors on first use.
func checkColumns(idCol, versionCol string, columns []string) error {
	seen := make(map[string]string, len(columns)+2)
	check := func(what, col string) error {
		if err := dialect.ValidateIdent(what, col); err != nil {
			return err
		}
		key := strings.ToLower(col)
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("keel: %s %q repeats %s; each column may appear once", what, col, prev)
		}
		seen[key] = what
		return nil
	}
	if err := check("TableConfig.IDColumn", idCol); err != nil {
		return err
	}
	if err := check("TableConfig.VersionColumn", versionCol); err != nil {
		return err
	}
	for i, col := range columns {
		if err := check(fmt.Sprintf("TableConfig.Columns[%d]", i), col); err != nil {
			return err
		}
	}
	return nil
}

// checkFields calls fields once on an empty aggregate, at construction, so
// that a mapping that disagrees with Columns fails early.
func checkFields[T aggregate.Aggregate](a T, fields func(T) []any, n int) error {
	var zero T
	if reflect.TypeFor[T]().Comparable() && any(a) == any(zero) {
		return errors.New("keel: TableConfig.New returned nil; it must return an empty aggregate")
	}
	ptrs := fields(a)
	if len(ptrs) != n {
		return fmt.Errorf("keel: TableConfig.Fields returned %d pointers for %d Columns; return one per column, in order", len(ptrs), n)
	}
	for i, p := range ptrs {
		if v := reflect.ValueOf(p); v.Kind() != reflect.Pointer || v.IsNil() {
			return fmt.Errorf("keel: TableConfig.Fields returned %T at index %d; return a non-nil pointer to each field, such as &a.Name", p, i)
		}
	}
	return nil
}

// Get loads the aggregate with the given id. It returns an error matching
// ErrNotFound when there is none.
func (r *Table[T]) Get(ctx context.Context, q Querier, id string) (T, error) {
	return r.get(ctx, q, id, r.getSQL, "get")
}

// GetForUpdate is Get that also locks the aggregate's row until q's
// transaction ends. On PostgreSQL it reads with SELECT ... FOR UPDATE; on
// SQLite, which locks the whole database for writing instead of rows, it is
// the same as Get, and the lock comes from opening the database with
// _txlock=immediate. See Document.GetForUpdate.
func (r *Table[T]) GetForUpdate(ctx context.Context, q Querier, id string) (T, error) {
	return r.get(ctx, q, id, r.getForUpdateSQL, "get for update")
}

func (r *Table[T]) get(ctx context.Context, q Querier, id, query, op string) (T, error) {
	var zero T
	if err := r.checkID(op, id); err != nil {
		return zero, err
	}
	a, err := r.fresh()
	if err != nil {
		return zero, err
	}
	var version int64
	dest := make([]any, 0, 1+r.columns)
	dest = append(dest, &version)
	dest = append(dest, r.fields(a)...)
	if err := q.QueryRowContext(ctx, query, id).Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return zero, r.notFound(id)
		}
		return zero, r.wrap(err, op, id)
	}
	aggregate.Restore(a, r.typ, id, version)
	return a, nil
}

// Exists reports whether an aggregate with the given id is stored.
func (r *Table[T]) Exists(ctx context.Context, q Querier, id string) (bool, error) {
	if err := r.checkID("exists", id); err != nil {
		return false, err
	}
	return r.exists(ctx, q, r.existsSQL, id, id)
}

// Save stores a, with the same versioning as Document.Save: a new aggregate
// is inserted at version 1, a loaded one at version v is updated to v+1
// only if the stored version is still v, and a stale or taken id returns a
// *ConflictError. A violated constraint of the table returns a
// *ConstraintError. On success the aggregate's version is advanced and,
// when q is a Tracker, q.Track(a) is called.
func (r *Table[T]) Save(ctx context.Context, q Querier, a T) error {
	if err := r.check("save", a); err != nil {
		return err
	}
	id, v := a.ID(), a.Version()
	ptrs := r.fields(a)
	var res sql.Result
	var err error
	if v == 0 {
		args := make([]any, 0, 1+len(ptrs))
		args = append(args, id)
		args = appendValues(args, ptrs)
		res, err = q.ExecContext(ctx, r.insertSQL, args...)
	} else {
		args := make([]any, 0, len(ptrs)+3)
		args = appendValues(args, ptrs)
		args = append(args, v+1, id, v)
		res, err = q.ExecContext(ctx, r.updateSQL, args...)
	}
	if err != nil {
		return r.wrap(err, "save", id)
	}
	if ok, err := r.matched(res, "save", id); !ok {
		if err != nil {
			return err
		}
		return r.conflict(ctx, q, r.versionSQL, id, v, id)
	}
	aggregate.SetVersion(a, v+1)
	saved(q, a)
	return nil
}

// Delete removes a if the stored version is still the one it was loaded at;
// otherwise it returns a *ConflictError. A row still referenced through a
// foreign key returns a *ConstraintError matching ErrForeignKeyViolation.
// Deleting an aggregate that was never saved returns an error matching
// ErrNotFound. On success, when q is a Tracker, q.Track(a) is called.
func (r *Table[T]) Delete(ctx context.Context, q Querier, a T) error {
	if err := r.check("delete", a); err != nil {
		return err
	}
	id, v := a.ID(), a.Version()
	if v == 0 {
		return fmt.Errorf("%w: delete %s %q: it was never saved (version 0)", ErrNotFound, r.typ, id)
	}
	res, err := q.ExecContext(ctx, r.deleteSQL, id, v)
	if err != nil {
		return r.wrap(err, "delete", id)
	}
	if ok, err := r.matched(res, "delete", id); !ok {
		if err != nil {
			return err
		}
		return r.conflict(ctx, q, r.versionSQL, id, v, id)
	}
	saved(q, a)
	return nil
}

// appendValues appends the values behind field pointers. Common types are
// dereferenced here, cheaply; anything else is passed as the pointer, which
// database/sql and the drivers dereference or call as a driver.Valuer.
func appendValues(args []any, ptrs []any) []any {
	for _, p := range ptrs {
		switch p := p.(type) {
		case *string:
			args = append(args, *p)
		case *int64:
			args = append(args, *p)
		case *int:
			args = append(args, int64(*p))
		case *bool:
			args = append(args, *p)
		case *float64:
			args = append(args, *p)
		case *[]byte:
			args = append(args, *p)
		case *time.Time:
			args = append(args, *p)
		default:
			args = append(args, p)
		}
	}
	return args
}
