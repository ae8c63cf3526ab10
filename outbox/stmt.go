package outbox

import (
	"context"
	"database/sql"
	"reflect"
	"strings"
	"sync"
)

// stmts runs the relay's hot statements (claims and settles) prepared once
// for a Run or a Drain instead of once per batch: lib/pq otherwise sends
// each as an unnamed statement that PostgreSQL plans anew on every call,
// and SQLite compiles it anew. A *sql.Stmt prepares itself again on each
// connection of the pool it runs on, so the pool stays free to replace
// connections. It is safe for concurrent use.
//
// pgx's database/sql driver already prepares and caches every statement
// per connection by default, and a *sql.Stmt on top of it only adds its
// own bookkeeping (claims measured about a tenth slower), so statements
// run from their text there; so they do when RelayConfig.DisablePrepare
// is set.
type stmts struct {
	db  *sql.DB
	off bool // run statements from their text

	mu sync.Mutex
	m  map[string]*sql.Stmt // query -> statement
}

func newStmts(db *sql.DB, disable bool) *stmts {
	return &stmts{db: db, off: disable || cachesStatements(db), m: map[string]*sql.Stmt{}}
}

// cachesStatements reports whether db's driver prepares and caches
// statements by itself: pgx's (github.com/jackc/pgx/v5/stdlib).
func cachesStatements(db *sql.DB) bool {
	t := reflect.TypeOf(db.Driver())
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t != nil && strings.HasPrefix(t.PkgPath(), "github.com/jackc/pgx/")
}

// get returns query prepared, preparing it on first use, or nil when
// statements run from their text. A failed prepare is not remembered: the
// next call tries again.
func (s *stmts) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if s.off {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.m[query] = st
	return st, nil
}

// query runs query, prepared unless statements run from their text.
func (s *stmts) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.get(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return s.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// exec is query for statements that return no rows.
func (s *stmts) exec(ctx context.Context, query string, args ...any) error {
	st, err := s.get(ctx, query)
	switch {
	case err != nil:
	case st == nil:
		_, err = s.db.ExecContext(ctx, query, args...)
	default:
		_, err = st.ExecContext(ctx, args...)
	}
	return err
}

// close closes every statement.
func (s *stmts) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for q, st := range s.m {
		_ = st.Close()
		delete(s.m, q)
	}
}
