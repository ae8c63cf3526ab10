package repository

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
)

// DocumentConfig configures a Document repository. Type and New are
// required; the zero value of every other field is a useful default.
type DocumentConfig[T aggregate.Aggregate] struct {
	// Type is the aggregate type name, as passed to aggregate.Root.Init,
	// such as "account". Rows are keyed by type and id, so one table holds
	// every aggregate type. Required.
	Type string
	// New returns an empty aggregate for Get to decode into, such as
	// func() *Account { return new(Account) }. Required.
	New func() T
	// Dialect is "sqlite" or "postgres". If empty, it is detected from the
	// database driver (mattn/go-sqlite3, lib/pq or pgx's stdlib).
	Dialect string
	// TablePrefix is the prefix of keel's tables, as given to
	// outbox.Migrate. If empty, the default "keel_" is used, so aggregates
	// are stored in keel_aggregates.
	TablePrefix string
}

// Document is a repository that stores each aggregate as a JSON document in
// keel's aggregates table, created by outbox.Migrate. The aggregate struct
// is encoded with encoding/json: its exported fields (or its MarshalJSON
// result) are the stored state, and the embedded aggregate.Root, whose
// fields are unexported, is not stored; the id and version live in their
// own columns. A Document is safe for concurrent use.
type Document[T aggregate.Aggregate] struct {
	core[T]
	insertSQL, updateSQL, deleteSQL string
	getSQL, getForUpdateSQL         string
	versionSQL, existsSQL           string
}

// NewDocument returns a Document repository for aggregates of type T. It
// validates cfg and builds its statements but does not touch the database:
// a missing table is reported by the first call that uses it, as an error
// matching ErrNotMigrated.
func NewDocument[T aggregate.Aggregate](db *sql.DB, cfg DocumentConfig[T]) (*Document[T], error) {
	c, err := newCore(db, cfg.Dialect, cfg.Type, cfg.New, "DocumentConfig")
	if err != nil {
		return nil, err
	}
	prefix, err := dialect.Prefix(cfg.TablePrefix)
	if err != nil {
		return nil, err
	}
	c.table = prefix + "aggregates"
	c.keelTable = true
	t, d := c.table, c.d
	where := " WHERE aggregate_type = ? AND aggregate_id = ?"
	r := &Document[T]{
		core: c,
		// ON CONFLICT DO NOTHING turns a taken id into zero affected rows
		// rather than an error, which on PostgreSQL would abort the
		// caller's transaction before the conflict could be reported.
		insertSQL: d.Rebind("INSERT INTO " + t + " (aggregate_type, aggregate_id, version, state, created_at, updated_at)" +
			" VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING"),
		updateSQL:  d.Rebind("UPDATE " + t + " SET version = ?, state = ?, updated_at = ?" + where + " AND version = ?"),
		deleteSQL:  d.Rebind("DELETE FROM " + t + where + " AND version = ?"),
		getSQL:     d.Rebind("SELECT version, state FROM " + t + where),
		versionSQL: d.Rebind("SELECT version FROM " + t + where),
		existsSQL:  d.Rebind("SELECT 1 FROM " + t + where),
	}
	r.getForUpdateSQL = r.getSQL
	if d.IsPostgres() {
		r.getForUpdateSQL += " FOR UPDATE"
	}
	return r, nil
}

// Get loads the aggregate with the given id. It returns an error matching
// ErrNotFound when there is none.
func (r *Document[T]) Get(ctx context.Context, q Querier, id string) (T, error) {
	return r.get(ctx, q, id, r.getSQL, "get")
}

// GetForUpdate is Get that also locks the aggregate's row until q's
// transaction ends, for commands that would otherwise conflict often.
//
// On PostgreSQL it reads with SELECT ... FOR UPDATE: a second transaction
// calling GetForUpdate for the same id waits until the first commits or
// rolls back, then reads the committed state. SQLite has no row locks; it
// locks the whole database for writing instead. Open it with
// _txlock=immediate so that every transaction takes the write lock at
// BEGIN: the read is then already serialised, and GetForUpdate is the same
// as Get. Outside a transaction the lock is released at once.
func (r *Document[T]) GetForUpdate(ctx context.Context, q Querier, id string) (T, error) {
	return r.get(ctx, q, id, r.getForUpdateSQL, "get for update")
}

func (r *Document[T]) get(ctx context.Context, q Querier, id, query, op string) (T, error) {
	var zero T
	if err := r.checkID(op, id); err != nil {
		return zero, err
	}
	a, err := r.fresh()
	if err != nil {
		return zero, err
	}
	rows, err := q.QueryContext(ctx, query, r.typArg, id)
	if err != nil {
		return zero, r.wrap(err, op, id)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return zero, r.wrap(err, op, id)
		}
		return zero, r.notFound(id)
	}
	var (
		version int64
		state   sql.RawBytes // decoded before the rows close, so never copied
	)
	if err := rows.Scan(&version, &state); err != nil {
		return zero, r.wrap(err, op, id)
	}
	if err := json.Unmarshal(state, a); err != nil {
		return zero, fmt.Errorf("keel: %s %s %q: decode stored state: %w", op, r.typ, id, err)
	}
	if err := rows.Close(); err != nil {
		return zero, r.wrap(err, op, id)
	}
	aggregate.Restore(a, r.typ, id, version)
	return a, nil
}

// Exists reports whether an aggregate with the given id is stored.
func (r *Document[T]) Exists(ctx context.Context, q Querier, id string) (bool, error) {
	if err := r.checkID("exists", id); err != nil {
		return false, err
	}
	return r.exists(ctx, q, r.existsSQL, id, r.typArg, id)
}

// Save stores a. A new aggregate (version 0) is inserted at version 1; if
// its id is already stored, Save returns a *ConflictError with Expected 0.
// A loaded aggregate at version v is updated to v+1 only if the stored
// version is still v; otherwise Save returns a *ConflictError with the
// stored version as Actual. On success the aggregate's version is advanced
// and, when q is a Tracker, q.Track(a) is called. Pending events are left
// for the unit of work.
func (r *Document[T]) Save(ctx context.Context, q Querier, a T) error {
	if err := r.check("save", a); err != nil {
		return err
	}
	state, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("keel: save %s %q: encode state: %w", r.typ, a.ID(), err)
	}
	id, v := a.ID(), a.Version()
	now := r.d.Time(time.Now())
	var res sql.Result
	if v == 0 {
		res, err = q.ExecContext(ctx, r.insertSQL, r.typArg, id, string(state), now, now)
	} else {
		res, err = q.ExecContext(ctx, r.updateSQL, v+1, string(state), now, r.typArg, id, v)
	}
	if err != nil {
		return r.wrap(err, "save", id)
	}
	if ok, err := r.matched(res, "save", id); !ok {
		if err != nil {
			return err
		}
		return r.conflict(ctx, q, r.versionSQL, id, v, r.typArg, id)
	}
	aggregate.SetVersion(a, v+1)
	saved(q, a)
	return nil
}

// Delete removes a if the stored version is still the one it was loaded at;
// otherwise it returns a *ConflictError. Deleting an aggregate that was
// never saved returns an error matching ErrNotFound. On success, when q is a
// Tracker, q.Track(a) is called, so events recorded by the aggregate before
// its deletion still reach the outbox.
func (r *Document[T]) Delete(ctx context.Context, q Querier, a T) error {
	if err := r.check("delete", a); err != nil {
		return err
	}
	id, v := a.ID(), a.Version()
	if v == 0 {
		return fmt.Errorf("%w: delete %s %q: it was never saved (version 0)", ErrNotFound, r.typ, id)
	}
	res, err := q.ExecContext(ctx, r.deleteSQL, r.typArg, id, v)
	if err != nil {
		return r.wrap(err, "delete", id)
	}
	if ok, err := r.matched(res, "delete", id); !ok {
		if err != nil {
			return err
		}
		return r.conflict(ctx, q, r.versionSQL, id, v, r.typArg, id)
	}
	saved(q, a)
	return nil
}
