// Package pqlisten wakes keel's relays through PostgreSQL's LISTEN, on a
// dedicated lib/pq connection opened from a connection string:
//
//	st, err := store.Open(db, postgres.Dialect(), store.Options{Listener: pqlisten.New(dsn)})
//
// Programs using pgx should use pgxlisten instead, which needs neither
// lib/pq nor a connection string.
package pqlisten

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/keel-go/keel/store"
)

// Listener holds a lib/pq listening connection. It implements
// store.Listener.
type Listener struct {
	dsn string
	// Logger receives connection losses at Warn and reconnections at Info.
	// If nil, slog.Default() is used.
	Logger *slog.Logger
}

// New returns a Listener that connects with dsn, a lib/pq connection
// string (usually the one the *sql.DB was opened with).
func New(dsn string) *Listener { return &Listener{dsn: dsn} }

var _ store.Listener = (*Listener)(nil)

// pingEvery is how often an idle listening connection is checked.
const pingEvery = 30 * time.Second

// Listen implements store.Listener. lib/pq reconnects by itself, between
// 10ms and 10s apart; every reconnection, like every notification, calls
// notify. Listen returns when ctx is done, after closing the connection and
// waiting for the goroutines it started.
func (l *Listener) Listen(ctx context.Context, channel string, notify func()) error {
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	pl := pq.NewListener(l.dsn, 10*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnectionAttemptFailed, pq.ListenerEventDisconnected:
			log.Warn("keel: LISTEN connection lost; relays poll until it is back", "channel", channel, "event", ev.String(), "err", err)
		case pq.ListenerEventReconnected:
			log.Info("keel: LISTEN connection back", "channel", channel)
		}
	})
	var wg sync.WaitGroup
	defer wg.Wait()  // runs second: the goroutines below end once pl is closed
	defer pl.Close() // runs first
	failed := make(chan error, 1)
	wg.Go(func() {
		// Listen blocks until connected; Close unblocks it.
		if err := pl.Listen(channel); err != nil {
			failed <- err
			return
		}
		notify()
	})
	var pinging atomic.Bool
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-pl.Notify:
			// A nil notification means the connection was re-established.
			notify()
		case <-ping.C:
			if pinging.CompareAndSwap(false, true) {
				wg.Go(func() {
					defer pinging.Store(false)
					_ = pl.Ping() // a failure makes lib/pq reconnect
				})
			}
		}
	}
}
