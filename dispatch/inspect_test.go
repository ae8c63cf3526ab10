package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/uow"
)

// TestProcessedBy reads a message's inbox rows from the store alone: none
// before delivery, only the handler that succeeded after a partly failed
// one, both after the redelivery.
func TestProcessedBy(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db)
		failed := false
		dispatch.Handle(b.router, "receipt", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			return b.effect(ctx, tx, "receipt", e.Order)
		})
		dispatch.Handle(b.router, "points", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
			if !failed {
				failed = true
				return errFlaky
			}
			return b.effect(ctx, tx, "points", e.Order)
		})
		ctx := context.Background()
		m := paid(t, "o-1", "cust-1")
		start := time.Now().Add(-time.Second)
		handlers := func() []string {
			t.Helper()
			ps, err := dispatch.ProcessedBy(ctx, db.Store, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range ps {
				if p.At.Before(start) || p.At.After(time.Now().Add(time.Second)) {
					t.Errorf("%s processed at %v, outside the test", p.Handler, p.At)
				}
				names = append(names, p.Handler)
			}
			return names
		}
		if got := handlers(); len(got) != 0 {
			t.Errorf("before delivery: %v", got)
		}
		if err := b.router.Deliver(ctx, m); err == nil {
			t.Fatal("first delivery succeeded, want the points handler's failure")
		}
		if diff := cmp.Diff([]string{"receipt"}, handlers()); diff != "" {
			t.Errorf("after the partial delivery (-want +got):\n%s", diff)
		}
		if err := b.router.Deliver(ctx, m); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"points", "receipt"}, handlers()); diff != "" {
			t.Errorf("after the redelivery (-want +got):\n%s", diff)
		}
	})
}
