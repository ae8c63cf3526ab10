package outbox

import (
	"context"
	"time"

	"github.com/lib/pq"
)

// notifyChannel is the PostgreSQL notification channel of a table prefix.
// EnqueueTx notifies it once per call; relays LISTEN on it. Channels are
// database-wide, so schemas sharing a prefix share a channel: a relay may be
// woken for another schema's rows, which costs one empty poll.
func notifyChannel(prefix string) string { return prefix + "outbox" }

// listenPing is how often an idle listener connection is checked.
const listenPing = 30 * time.Second

// listen holds a dedicated connection LISTENing on the outbox channel and
// wakes the relay for every notification, and after every reconnect, since
// notifications sent while disconnected are lost.
func (r *Relay) listen(ctx context.Context) {
	l := pq.NewListener(r.cfg.ListenDSN, 10*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnectionAttemptFailed, pq.ListenerEventDisconnected:
			r.log.Warn("keel: relay listener connection lost; polling meanwhile", "event", ev.String(), "err", err)
		case pq.ListenerEventReconnected:
			r.log.Info("keel: relay listener reconnected")
		}
	})
	defer l.Close()
	go func() {
		// Listen blocks until connected; Close, deferred above, unblocks it.
		if err := l.Listen(r.channel); err != nil {
			if ctx.Err() == nil {
				r.log.Error("keel: relay cannot LISTEN; polling only", "channel", r.channel, "err", err)
			}
			return
		}
		r.log.Debug("keel: relay listening", "channel", r.channel)
		r.listenOnce.Do(func() { close(r.listening) })
	}()
	ping := time.NewTicker(listenPing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.Notify:
			// A nil notification means the connection was re-established.
			r.Notify()
		case <-ping.C:
			go func() { _ = l.Ping() }()
		}
	}
}
