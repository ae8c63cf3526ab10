// Package pgxlisten wakes keel's relays through PostgreSQL's LISTEN, on a
// connection of a *sql.DB opened with pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib), so pgx users need no second driver and
// no connection string:
//
//	db := stdlib.OpenDBFromPool(pool)
//	st, err := store.Open(db, postgres.Dialect(), store.Options{Listener: pgxlisten.New(db)})
//
// While any relay of the store runs, the listener holds one connection of
// the pool, so size the pool one larger than the application needs.
package pgxlisten

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keel-go/keel/internal/backoff"
	"github.com/keel-go/keel/store"
)

// Listener listens on a connection taken from a *sql.DB backed by pgx. It
// implements store.Listener.
type Listener struct {
	db *sql.DB
	// Logger receives connection losses at Warn and reconnections at Info.
	// If nil, slog.Default() is used.
	Logger *slog.Logger
}

// New returns a Listener using connections of db, which must have been
// opened with pgx's stdlib driver (sql.Open("pgx", dsn) or
// stdlib.OpenDBFromPool).
func New(db *sql.DB) *Listener { return &Listener{db: db} }

var _ store.Listener = (*Listener)(nil)

// errNotPgx says the *sql.DB is not backed by pgx; no retry can fix that.
var errNotPgx = errors.New("keel: pgxlisten: the *sql.DB is not opened with pgx's stdlib driver; open it with sql.Open(\"pgx\", dsn) or stdlib.OpenDBFromPool, or use pqlisten with lib/pq")

// reconnect spaces out attempts to get a listening connection back.
var reconnect = backoff.Policy{Base: 10 * time.Millisecond, Max: 10 * time.Second}

// Listen implements store.Listener: it listens on channel until ctx is
// done, reconnecting after connection failures, and calls notify for every
// notification and after every (re)connection.
func (l *Listener) Listen(ctx context.Context, channel string, notify func()) error {
	if l.db == nil {
		return errors.New("keel: pgxlisten: nil *sql.DB; pass the handle to New")
	}
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	for failures := 0; ; {
		connected, err := l.listenOnce(ctx, channel, notify)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errNotPgx) {
			return err
		}
		if connected {
			failures = 0
		}
		failures++
		if failures == 1 {
			log.Warn("keel: LISTEN connection lost; relays poll until it is back", "channel", channel, "err", err)
		}
		if backoff.Sleep(ctx, reconnect.Delay(failures)) != nil {
			return nil
		}
	}
}

// listenOnce takes a connection, LISTENs and waits for notifications
// until the connection fails or ctx is done. The connection is never given
// back to the pool: it is discarded, so no pooled connection keeps
// listening.
func (l *Listener) listenOnce(ctx context.Context, channel string, notify func()) (connected bool, err error) {
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("%w (driver connection is %T)", errNotPgx, dc)
		}
		pc := c.Conn()
		defer pc.Close(context.WithoutCancel(ctx)) // a pgxpool would otherwise take it back, still listening
		if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
			return fmt.Errorf("%w: LISTEN %s: %w", driver.ErrBadConn, channel, err)
		}
		connected = true
		notify()
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return fmt.Errorf("%w: %w", driver.ErrBadConn, err)
			}
			notify()
		}
	})
	return connected, err
}
