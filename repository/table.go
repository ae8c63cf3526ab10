package repository

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/store"
)

// TableConfig configures a Table repository: which table and columns hold
// the aggregate, and how its fields map to them. Table, Type and New are
// required; the zero value of every other field is a useful default.
type TableConfig[T aggregate.Aggregate] struct {
	// Table is the application's table, as name or schema.name. Required.
	// Its primary key must be IDColumn.
	Table string
	// Type is the aggregate type name, as passed to aggregate.Root.Init,
	// such as "vehicle". Required; at most 255 bytes.
	Type string
	// New returns an empty aggregate for Get to scan into, such as
	// func() *Vehicle { return new(Vehicle) }. Required.
	New func() T
	// IDColumn is the primary-key column holding the aggregate id. If
	// empty, "id" is used.
	//
	// Ids are compared byte for byte on every dialect, so the column must
	// hold up to 512 bytes and compare that way too. On MySQL that means
	// VARCHAR(512) (a TEXT column cannot be a key) with a binary collation
	// that does not pad, such as utf8mb4_nopad_bin on MariaDB or
	// utf8mb4_0900_bin on MySQL 8, or VARBINARY(512): under the default
	// collations "acc-1", "Acc-1" and "acc-1 " are one id.
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
}

// Table is a repository that stores aggregates in the application's own
// table, one column per field, with an id column and a version column. The
// table keeps its own unique and foreign-key constraints: a violation is
// returned as a *ConstraintError matching ErrUniqueViolation or
// ErrForeignKeyViolation. A Table is safe for concurrent use.
type Table[T aggregate.Aggregate] struct {
	core[T]
}

// NewTable returns a Table repository for aggregates of type T in the
// application's table cfg.Table of st's database. It checks cfg, requiring
// every table and column name to be a plain SQL identifier, and builds its
// statements, but does not touch the database.
func NewTable[T aggregate.Aggregate](st *store.Store, cfg TableConfig[T]) (*Table[T], error) {
	c, err := newCore(st, cfg.Type, cfg.New, "TableConfig")
	if err != nil {
		return nil, err
	}
	if cfg.Table == "" {
		return nil, dialect.Invalid("TableConfig.Table is empty: set it to the name of the table holding the aggregates")
	}
	if err := dialect.ValidateQualifiedIdent("TableConfig.Table", cfg.Table); err != nil {
		return nil, err
	}
	idCol, versionCol := orDefault(cfg.IDColumn, "id"), orDefault(cfg.VersionColumn, "version")
	columns, fields := cfg.Columns, cfg.Fields
	switch {
	case columns == nil && fields == nil:
		if columns, fields, err = taggedFields[T](); err != nil {
			return nil, err
		}
	case fields == nil:
		return nil, dialect.Invalid("TableConfig.Fields is nil: set it to a function returning pointers to the fields stored in Columns, in order")
	}
	if err := checkColumns(idCol, versionCol, columns); err != nil {
		return nil, err
	}
	if err := checkFields(cfg.New(), fields, len(columns)); err != nil {
		return nil, err
	}
	c.keyArgs = func(id string) []any { return []any{id} }
	c.values = func(args []any, a T, _ any) ([]any, error) { return appendValues(args, fields(a)), nil }
	c.insertOnly = func(args []any, _ any) []any { return args }
	c.scan = func(a T) ([]any, func() error) { return fields(a), func() error { return nil } }
	// The insert does nothing on a taken id, which is reported as a
	// conflict, while any other unique constraint still fails as a
	// *ConstraintError.
	c.build(table{name: cfg.Table, key: []string{idCol}, version: versionCol, columns: columns})
	return &Table[T]{core: c}, nil
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
			return dialect.Invalid("%s %q repeats %s; each column may appear once", what, col, prev)
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
		return dialect.Invalid("TableConfig.New returned nil; it must return an empty aggregate")
	}
	ptrs := fields(a)
	if len(ptrs) != n {
		return dialect.Invalid("TableConfig.Fields returned %d pointers for %d Columns; return one per column, in order", len(ptrs), n)
	}
	for i, p := range ptrs {
		if v := reflect.ValueOf(p); v.Kind() != reflect.Pointer || v.IsNil() {
			return dialect.Invalid("TableConfig.Fields returned %T at index %d; return a non-nil pointer to each field, such as &a.Name", p, i)
		}
	}
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
