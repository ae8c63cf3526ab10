package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
)

// core holds what Document and Table share: the dialect, the aggregate type,
// the table, and the checks and error handling around every statement.
type core[T aggregate.Aggregate] struct {
	d   *dialect.Dialect
	typ string
	// typArg is typ boxed once, so passing it as a query argument does not
	// allocate on every call.
	typArg any
	table  string
	// keelTable is true for the document table, which outbox.Migrate
	// creates, and false for an application's own table.
	keelTable bool
	newT      func() T
	// comparable is true when T values can be compared with ==, which is
	// how a nil pointer is caught without reflection on every call.
	comparable bool
}

func newCore[T aggregate.Aggregate](db *sql.DB, dialectName, typ string, newT func() T, cfgName string) (core[T], error) {
	if typ == "" {
		return core[T]{}, fmt.Errorf("keel: %s.Type is empty: set it to the aggregate's type name, as passed to Init", cfgName)
	}
	if newT == nil {
		return core[T]{}, fmt.Errorf("keel: %s.New is nil: set it to a function returning an empty aggregate, such as func() *Account { return new(Account) }", cfgName)
	}
	d, err := dialect.Resolve(db, dialectName)
	if err != nil {
		return core[T]{}, err
	}
	return core[T]{d: d, typ: typ, typArg: typ, newT: newT, comparable: reflect.TypeFor[T]().Comparable()}, nil
}

// isNil reports whether a is a nil pointer or a nil interface.
func (c *core[T]) isNil(a T) bool {
	var zero T
	return c.comparable && any(a) == any(zero)
}

// check validates an aggregate passed to Save or Delete.
func (c *core[T]) check(op string, a T) error {
	if c.isNil(a) {
		return fmt.Errorf("%w: %s was given a nil %s", aggregate.ErrEmptyID, op, c.typ)
	}
	if err := aggregate.Validate(a); err != nil {
		return err
	}
	if a.Type() != c.typ {
		return fmt.Errorf("keel: %s: aggregate %q has type %q but this repository stores %q aggregates", op, a.ID(), a.Type(), c.typ)
	}
	return nil
}

// checkID validates an id passed to Get, GetForUpdate or Exists.
func (c *core[T]) checkID(op, id string) error {
	if id == "" {
		return fmt.Errorf("%w: %s needs the id of the %s", aggregate.ErrEmptyID, op, c.typ)
	}
	return nil
}

// fresh returns an empty aggregate to load into.
func (c *core[T]) fresh() (T, error) {
	a := c.newT()
	if c.isNil(a) {
		return a, fmt.Errorf("keel: the New function of the %s repository returned nil; it must return an empty aggregate", c.typ)
	}
	return a, nil
}

// saved finishes a successful Save or Delete: it hands the aggregate to the
// unit of work, which writes its pending events to the outbox.
func saved(q Querier, a aggregate.Aggregate) {
	if t, ok := q.(Tracker); ok {
		t.Track(a)
	}
}

// wrap turns a driver error into one of the package's errors.
func (c *core[T]) wrap(err error, op, id string) error {
	switch {
	case dialect.IsMissingTable(err):
		if c.keelTable {
			return dialect.MissingTable(err, c.table)
		}
		return &missingTableError{table: c.table, err: err}
	case dialect.IsUniqueViolation(err), dialect.IsForeignKeyViolation(err):
		return fmt.Errorf("%w (%s %s %q)", &ConstraintError{Constraint: dialect.ConstraintName(err), Err: err}, op, c.typ, id)
	}
	return fmt.Errorf("keel: %s %s %q: %w", op, c.typ, id, err)
}

// conflict builds the *ConflictError for a write that matched no row. It
// reads the stored version, which costs a round trip only on this path.
func (c *core[T]) conflict(ctx context.Context, q Querier, versionSQL string, id string, expected int64, key ...any) error {
	var actual int64
	err := q.QueryRowContext(ctx, versionSQL, key...).Scan(&actual)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("keel: %s %q: write matched no row at version %d, and reading the stored version failed: %w", c.typ, id, expected, err)
	}
	return &ConflictError{Type: c.typ, ID: id, Expected: expected, Actual: actual}
}

// notFound is the error for a Get of a missing id.
func (c *core[T]) notFound(id string) error {
	return fmt.Errorf("%w: %s %q", ErrNotFound, c.typ, id)
}

// matched reports whether a versioned write changed a row. When it did not,
// and err is nil, the caller reports a conflict.
func (c *core[T]) matched(res sql.Result, op, id string) (bool, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("keel: %s %s %q: rows affected: %w", op, c.typ, id, err)
	}
	return n > 0, nil
}

// exists runs a SELECT 1 by key.
func (c *core[T]) exists(ctx context.Context, q Querier, query, id string, key ...any) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, query, key...).Scan(&one)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	}
	return false, c.wrap(err, "exists", id)
}
