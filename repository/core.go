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
	"github.com/keel-go/keel/internal/aggstate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/store"
)

// core is the one CRUD and versioned-write path that Document and Table
// share. A repository describes its table (key columns, version column,
// state columns) and how an aggregate's state maps to column values; core
// builds the statements once and runs them.
type core[T aggregate.Aggregate] struct {
	d   dialect.Dialect
	typ string
	// typArg is typ boxed once, so passing it as a query argument does not
	// allocate on every call.
	typArg any
	table  string
	// keelTable is true for the document table, which Store.Migrate
	// creates, and false for an application's own table.
	keelTable  bool
	newT       func() T
	comparable bool // T values compare with ==, which catches a nil pointer cheaply
	cfgName    string

	// keyArgs returns the key column values of an id, in key order.
	keyArgs func(id string) []any
	// values appends the state column values of a, then those written on
	// every save (touch), in column order.
	values func(args []any, a T, now any) ([]any, error)
	// insertOnly appends the values of the columns written only by an
	// insert.
	insertOnly func(args []any, now any) []any
	// scan returns where to scan a's state columns, and a function run once
	// the row is scanned (before the rows close) that finishes loading a.
	scan func(a T) (dest []any, loaded func() error)

	insertSQL, updateSQL, deleteSQL string
	getSQL, getForUpdateSQL         string
	versionSQL, existsSQL           string
}

// table describes what core needs to build its statements.
type table struct {
	name       string
	key        []string // key columns
	version    string
	columns    []string // state columns, read and written
	touch      []string // written on every save, not read
	insertOnly []string // written by inserts only
}

func newCore[T aggregate.Aggregate](st *store.Store, typ string, newT func() T, cfgName string) (core[T], error) {
	if st == nil {
		return core[T]{}, dialect.Invalid("%s: nil *store.Store; pass the store from store.Open", cfgName)
	}
	if typ == "" {
		return core[T]{}, dialect.Invalid("%s.Type is empty: set it to the aggregate's type name, as passed to Init", cfgName)
	}
	if err := dialect.CheckText(cfgName+".Type", typ, dialect.MaxIDBytes); err != nil {
		return core[T]{}, dialect.Invalid("%v", err)
	}
	if newT == nil {
		return core[T]{}, dialect.Invalid("%s.New is nil: set it to a function returning an empty aggregate, such as func() *Account { return new(Account) }", cfgName)
	}
	return core[T]{d: st.Dialect(), typ: typ, typArg: typ, newT: newT, comparable: reflect.TypeFor[T]().Comparable(), cfgName: cfgName}, nil
}

// build writes the statements for t.
func (c *core[T]) build(t table) {
	c.table = t.name
	where := " WHERE " + strings.Join(t.key, " = ? AND ") + " = ?"
	var sets strings.Builder
	for _, col := range append(append([]string(nil), t.columns...), t.touch...) {
		sets.WriteString(col + " = ?, ")
	}
	insertCols := append(append(append(append([]string(nil), t.key...), t.version), t.columns...), t.touch...)
	insertCols = append(insertCols, t.insertOnly...)
	rb := c.d.Rebind
	c.insertSQL = rb(c.d.InsertIfAbsent(t.name, insertCols, t.key))
	c.updateSQL = rb("UPDATE " + t.name + " SET " + sets.String() + t.version + " = ?" + where + " AND " + t.version + " = ?")
	c.deleteSQL = rb("DELETE FROM " + t.name + where + " AND " + t.version + " = ?")
	c.getSQL = rb("SELECT " + strings.Join(append([]string{t.version}, t.columns...), ", ") + " FROM " + t.name + where)
	c.getForUpdateSQL = c.getSQL + c.d.ForUpdate()
	// The version is read to explain a write that matched no row, so it
	// must be the committed one, not the transaction's snapshot.
	current := ""
	if cr, ok := c.d.(dialect.CurrentReader); ok {
		current = cr.ReadCurrent()
	}
	c.versionSQL = rb("SELECT " + t.version + " FROM " + t.name + where + current)
	c.existsSQL = rb("SELECT 1 FROM " + t.name + where)
}

// isNil reports whether a is a nil pointer or a nil interface.
func (c *core[T]) isNil(a T) bool {
	var zero T
	return c.comparable && any(a) == any(zero)
}

// check validates an aggregate passed to Save or Delete through q.
func (c *core[T]) check(op string, q Querier, a T) error {
	if c.isNil(a) {
		return fmt.Errorf("%w: %s was given a nil %s", aggregate.ErrEmptyID, op, c.typ)
	}
	if err := aggregate.Validate(a); err != nil {
		return err
	}
	if a.Type() != c.typ {
		return fmt.Errorf("keel: %s: aggregate %s has type %s but this repository stores %s aggregates", op, dialect.Quote(a.ID()), dialect.Quote(a.Type()), dialect.Quote(c.typ))
	}
	if err := c.checkID(op, a.ID()); err != nil {
		return err
	}
	if _, ok := q.(Tracker); !ok && a.HasChanges() {
		return fmt.Errorf("%w: %s %s %s through a %T, which does not track aggregates, so the events it recorded would never reach the outbox; run the change in a unit of work (uow.Runner.Do, or Runner.Join with your own transaction)",
			ErrUntracked, op, c.typ, dialect.Quote(a.ID()), q)
	}
	return nil
}

// checkID validates an aggregate id.
func (c *core[T]) checkID(op, id string) error {
	if id == "" {
		return fmt.Errorf("%w: %s needs the id of the %s", aggregate.ErrEmptyID, op, c.typ)
	}
	if err := dialect.CheckText("the id", id, dialect.MaxKeyBytes); err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrInvalidID, op, c.typ, err)
	}
	return nil
}

// Get loads the aggregate with the given id. It returns an error matching
// ErrNotFound when there is none. When q is a LockAdvisor that asks for a
// lock on this aggregate, Get is GetForUpdate.
func (c *core[T]) Get(ctx context.Context, q Querier, id string) (T, error) {
	if la, ok := q.(LockAdvisor); ok && la.ShouldLock(c.typ, id) {
		return c.get(ctx, q, id, c.getForUpdateSQL, "get for update")
	}
	return c.get(ctx, q, id, c.getSQL, "get")
}

// GetForUpdate is Get that also locks the aggregate's row until q's
// transaction ends, for commands that would otherwise conflict often.
//
// On PostgreSQL and MySQL it reads with SELECT ... FOR UPDATE: a second
// transaction calling GetForUpdate for the same id waits until the first
// commits or rolls back, then reads the committed state (on MySQL, even
// under REPEATABLE READ, whose plain reads see the transaction's
// snapshot). SQLite has no row locks; it
// locks the whole database for writing instead. Open it with
// _txlock=immediate (sqlite.DSNOptions) so that every transaction takes
// the write lock at BEGIN: the read is then already serialised, and
// GetForUpdate is the same as Get. Outside a transaction the lock is
// released at once.
func (c *core[T]) GetForUpdate(ctx context.Context, q Querier, id string) (T, error) {
	return c.get(ctx, q, id, c.getForUpdateSQL, "get for update")
}

func (c *core[T]) get(ctx context.Context, q Querier, id, query, op string) (T, error) {
	var zero T
	if err := c.checkID(op, id); err != nil {
		return zero, err
	}
	a := c.newT()
	if c.isNil(a) {
		return zero, fmt.Errorf("keel: the New function of the %s repository returned nil; it must return an empty aggregate", c.typ)
	}
	rows, err := q.QueryContext(ctx, query, c.keyArgs(id)...)
	if err != nil {
		return zero, c.wrap(err, op, id)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return zero, c.wrap(err, op, id)
		}
		return zero, fmt.Errorf("%w: %s %s", ErrNotFound, c.typ, dialect.Quote(id))
	}
	var version int64
	fields, loaded := c.scan(a)
	if err := rows.Scan(append([]any{&version}, fields...)...); err != nil {
		return zero, c.wrap(err, op, id)
	}
	if err := loaded(); err != nil {
		return zero, fmt.Errorf("keel: %s %s %s: %w", op, c.typ, dialect.Quote(id), err)
	}
	if err := rows.Close(); err != nil {
		return zero, c.wrap(err, op, id)
	}
	aggstate.Restore(a, c.typ, id, version)
	return a, nil
}

// Exists reports whether an aggregate with the given id is stored.
func (c *core[T]) Exists(ctx context.Context, q Querier, id string) (bool, error) {
	if err := c.checkID("exists", id); err != nil {
		return false, err
	}
	var one int
	err := q.QueryRowContext(ctx, c.existsSQL, c.keyArgs(id)...).Scan(&one)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	}
	return false, c.wrap(err, "exists", id)
}

// Save stores a. A new aggregate (version 0) is inserted at version 1; if
// its id is already stored, Save returns a *ConflictError with Expected 0.
// A loaded aggregate at version v is updated to v+1 only if the stored
// version is still v; otherwise Save returns a *ConflictError with the
// stored version as Actual. A violated constraint of the table returns a
// *ConstraintError.
//
// On success the aggregate's version is advanced and, when q is a Tracker
// (the unit of work's transaction), q.Track(a) is called; its pending
// events are left for the unit of work to write to the outbox. Saving an
// aggregate with pending events through a q that is not a Tracker returns
// an error matching ErrUntracked and stores nothing, since its events would
// be lost.
func (c *core[T]) Save(ctx context.Context, q Querier, a T) error {
	if err := c.check("save", q, a); err != nil {
		return err
	}
	id, v := a.ID(), a.Version()
	now := c.d.Time(time.Now())
	args := make([]any, 0, 12)
	var query string
	if v == 0 {
		query = c.insertSQL
		args = append(append(args, c.keyArgs(id)...), int64(1))
	} else {
		query = c.updateSQL
	}
	args, err := c.values(args, a, now)
	if err != nil {
		return fmt.Errorf("keel: save %s %s: %w", c.typ, dialect.Quote(id), err)
	}
	if v == 0 {
		args = c.insertOnly(args, now)
	} else {
		args = append(append(append(args, v+1), c.keyArgs(id)...), v)
	}
	res, err := q.ExecContext(ctx, query, args...)
	if err != nil && !(v == 0 && c.d.Classify(err) == dialect.KeyConflict) {
		return c.wrap(err, "save", id)
	}
	if err := c.written(ctx, q, res, err, "save", id, v); err != nil {
		return err
	}
	aggstate.SetVersion(a, v+1)
	c.track(q, a)
	return nil
}

// Delete removes a if the stored version is still the one it was loaded at;
// otherwise it returns a *ConflictError. A row still referenced through a
// foreign key returns a *ConstraintError matching ErrForeignKeyViolation.
// Deleting an aggregate that was never saved returns an error matching
// ErrNotFound. On success, when q is a Tracker, q.Track(a) is called, so
// events recorded by the aggregate before its deletion still reach the
// outbox.
func (c *core[T]) Delete(ctx context.Context, q Querier, a T) error {
	if err := c.check("delete", q, a); err != nil {
		return err
	}
	id, v := a.ID(), a.Version()
	if v == 0 {
		return fmt.Errorf("%w: delete %s %s: it was never saved (version 0)", ErrNotFound, c.typ, dialect.Quote(id))
	}
	res, err := q.ExecContext(ctx, c.deleteSQL, append(c.keyArgs(id), v)...)
	if err != nil {
		return c.wrap(err, "delete", id)
	}
	if err := c.written(ctx, q, res, nil, "delete", id, v); err != nil {
		return err
	}
	c.track(q, a)
	return nil
}

// written checks that a versioned write changed a row, and builds the
// *ConflictError when it did not (or when the insert reported a key
// conflict, execErr). The stored version costs a round trip only then.
func (c *core[T]) written(ctx context.Context, q Querier, res sql.Result, execErr error, op, id string, expected int64) error {
	if execErr == nil {
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("keel: %s %s %s: rows affected: %w", op, c.typ, dialect.Quote(id), err)
		}
		if n > 0 {
			return nil
		}
	}
	var actual int64
	err := q.QueryRowContext(ctx, c.versionSQL, c.keyArgs(id)...).Scan(&actual)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("keel: %s %s %s: write matched no row at version %d, and reading the stored version failed: %w", op, c.typ, dialect.Quote(id), expected, err)
	}
	return &ConflictError{Type: c.typ, ID: id, Expected: expected, Actual: actual}
}

// track hands a saved or deleted aggregate to the unit of work, which
// writes its pending events to the outbox.
func (c *core[T]) track(q Querier, a aggregate.Aggregate) {
	if t, ok := q.(Tracker); ok {
		t.Track(a)
	}
}

// wrap turns a driver error into one of the package's errors.
func (c *core[T]) wrap(err error, op, id string) error {
	switch c.d.Classify(err) {
	case dialect.MissingTable:
		if c.keelTable {
			return dialect.WrapMissing(c.d, err, c.table)
		}
		return &missingTableError{table: c.table, err: err}
	case dialect.Unique, dialect.ForeignKey:
		return fmt.Errorf("%w (%s %s %s)", &ConstraintError{Constraint: c.d.ConstraintName(err), Err: err, kind: c.d.Classify(err)}, op, c.typ, dialect.Quote(id))
	}
	return fmt.Errorf("keel: %s %s %s: %w", op, c.typ, dialect.Quote(id), err)
}
