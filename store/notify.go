package store

import (
	"context"
	"errors"
	"time"

	"github.com/keel-go/keel/internal/backoff"
	"github.com/keel-go/keel/internal/dialect"
)

// A Listener carries wake-ups from commits in other processes: the
// PostgreSQL listeners in store/postgres/pgxlisten and
// store/postgres/pqlisten implement it.
type Listener interface {
	// Listen waits for notifications on channel and calls notify for each
	// one, and once each time it has (re)connected, since notifications
	// sent while it was away are lost. It reconnects by itself after a
	// connection failure and returns only when ctx is done, or with an
	// error that retrying cannot fix. notify never blocks.
	Listen(ctx context.Context, channel string, notify func()) error
}

// listening is a running listener goroutine.
type listening struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Notify wakes every relay of this Store running in this process, at once.
// Units of work call it after each commit that wrote outbox rows, and the
// outbox after a requeue, so applications rarely need to.
func (s *Store) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives a value after Notify, or after
// the Store's Listener reports a commit in another process, and a function
// that ends the subscription. Signals are coalesced: a channel holds at most
// one. Relays subscribe while they run. The Listener runs while anything is
// subscribed, and stops, its connection closed, when the last subscription
// ends.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	if s.listen == nil && s.opts.Listener != nil {
		ctx, cancel := context.WithCancel(context.Background())
		l := &listening{cancel: cancel, done: make(chan struct{})}
		s.listen = l
		go s.runListener(ctx, l)
	}
	s.mu.Unlock()
	ended := false
	return ch, func() {
		s.mu.Lock()
		if ended {
			s.mu.Unlock()
			return
		}
		ended = true
		delete(s.subs, ch)
		var stop *listening
		if len(s.subs) == 0 {
			stop, s.listen = s.listen, nil
		}
		s.mu.Unlock()
		if stop != nil {
			stop.cancel()
			<-stop.done
		}
	}
}

// listenRetry spaces out restarts of a Listener that gave up.
var listenRetry = backoff.Policy{Base: time.Second, Max: 30 * time.Second}

// runListener keeps the Listener running until ctx is done, restarting it
// with backoff if it gives up.
func (s *Store) runListener(ctx context.Context, l *listening) {
	defer close(l.done)
	channel := dialect.Channel(s.prefix)
	log := s.opts.Logger
	for failures := 0; ; {
		err := s.opts.Listener.Listen(ctx, channel, s.Notify)
		if ctx.Err() != nil {
			return
		}
		failures++
		if err == nil {
			err = errors.New("listener returned before it was stopped")
		}
		log.Error("keel: store listener stopped; relays poll until it restarts", "channel", channel, "failures", failures, "err", err)
		if backoff.Sleep(ctx, listenRetry.Delay(failures)) != nil {
			return
		}
	}
}
