package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// TestLookup reads one row in each state by id, and an unknown id.
func TestLookup(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msgs := []outbox.Message{
			{ID: "p1", Name: "placed", Key: "k", Payload: []byte(`{"n":1}`), Headers: map[string]string{"h": "v"}},
			{ID: "x1", Name: "placed", Key: "k", Payload: []byte(`{"n":2}`)},
			{ID: "d1", Name: "placed", Key: "j", Payload: []byte(`{"n":3}`)},
		}
		if err := ob.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		parkedAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
		park(t, db, parkedAt, "x1")
		deliveredAt := time.Now().UTC().Truncate(time.Millisecond)
		d := db.Dialect()
		if _, err := db.SQL().Exec(d.Rebind("UPDATE keel_outbox SET state = 1, delivered_at = ? WHERE id = 'd1'"), d.Time(deliveredAt)); err != nil {
			t.Fatal(err)
		}

		p, err := ob.Lookup(ctx, "p1")
		if err != nil {
			t.Fatal(err)
		}
		if p.State != outbox.StatePending || p.Name != "placed" || p.Key != "k" || string(p.Payload) != `{"n":1}` ||
			p.Headers["h"] != "v" || p.Seq == 0 || p.EnqueuedAt.IsZero() || !p.DeliveredAt.IsZero() || p.LastError != "" {
			t.Errorf("pending row = %+v", p)
		}
		x, err := ob.Lookup(ctx, "x1")
		if err != nil {
			t.Fatal(err)
		}
		if x.State != outbox.StateParked || x.LastError != "boom" || x.Attempts != 3 || !x.NextAttemptAt.Equal(parkedAt) {
			t.Errorf("parked row = state %v, error %q, attempts %d, parked at %v (want %v)", x.State, x.LastError, x.Attempts, x.NextAttemptAt, parkedAt)
		}
		dl, err := ob.Lookup(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		if dl.State != outbox.StateDelivered || !dl.DeliveredAt.Equal(deliveredAt) {
			t.Errorf("delivered row = state %v, delivered at %v (want %v)", dl.State, dl.DeliveredAt, deliveredAt)
		}
		if _, err := ob.Lookup(ctx, "nope"); !errors.Is(err, outbox.ErrUnknownMessage) {
			t.Errorf("Lookup(unknown) = %v, want ErrUnknownMessage", err)
		}
		b, err := json.Marshal(struct{ S outbox.State }{outbox.StateParked})
		if err != nil || string(b) != `{"S":"parked"}` {
			t.Errorf("State as JSON = %s, %v", b, err)
		}
	})
}

// TestLeases lists the 64 leases: all free before a relay runs, all held by
// the one relay while it runs, and free again once it stopped.
func TestLeases(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		held := func() map[string]int {
			t.Helper()
			ls, err := ob.Leases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ls) != 64 {
				t.Fatalf("Leases returned %d rows, want 64", len(ls))
			}
			out := map[string]int{}
			now := time.Now()
			for i, l := range ls {
				if l.Partition != i {
					t.Fatalf("lease %d is of partition %d", i, l.Partition)
				}
				if l.Held(now) {
					out[l.Owner]++
				}
			}
			return out
		}
		if diff := cmp.Diff(map[string]int{}, held()); diff != "" {
			t.Errorf("leases before any relay (-want +got):\n%s", diff)
		}
		r := newRelay(t, db.Store, outbox.PublisherFunc(func(context.Context, []outbox.Message) error { return nil }), outbox.RelayConfig{ID: "relay-a"})
		h := runRelay(t, r)
		testdb.Eventually(t, 10*time.Second, "the relay to lease every partition", func() bool { return held()["relay-a"] == 64 })
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int{}, held()); diff != "" {
			t.Errorf("leases after the relay stopped (-want +got):\n%s", diff)
		}
	})
}

// TestRelaysCountDeliveries lists the live relays: none before a relay
// runs; one that delivered n messages shows n with its next heartbeat,
// with every partition; none once it stopped and left.
func TestRelaysCountDeliveries(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		relays := func() []outbox.RelayInfo {
			t.Helper()
			rs, err := ob.Relays(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return rs
		}
		if rs := relays(); len(rs) != 0 {
			t.Fatalf("Relays before any relay ran = %+v", rs)
		}
		rec := &recorder{}
		// Leases of 900ms: a heartbeat every 300ms.
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{ID: "relay-a", LeaseDuration: 900 * time.Millisecond})
		h := runRelay(t, r)
		holdsAll(t, r)
		fill(t, ob, 5, 8) // 40 messages
		testdb.Eventually(t, 10*time.Second, "delivery of every message", func() bool { return rec.count() == 40 })
		var got outbox.RelayInfo
		testdb.Eventually(t, 10*time.Second, "a heartbeat counting 40 deliveries", func() bool {
			rs := relays()
			if len(rs) != 1 {
				t.Fatalf("Relays = %+v; want relay-a alone", rs)
			}
			got = rs[0]
			return got.Delivered == 40
		})
		if got.ID != "relay-a" || got.Partitions != outbox.Partitions || !got.ExpiresAt.After(time.Now()) {
			t.Errorf("relay = %+v; want relay-a holding every partition, its heartbeat not lapsed", got)
		}
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		if rs := relays(); len(rs) != 0 {
			t.Errorf("Relays after the relay stopped = %+v; want none", rs)
		}
	})
}
