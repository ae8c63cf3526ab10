package uow_test

import (
	"context"
	"errors"
	"testing"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// TestCommitWakesSubscribers guards the wake-up of relays in this process:
// before, a unit woke nothing unless the application registered an
// AfterCommit hook calling relay.Notify. Now a unit that committed outbox
// rows calls Store.Notify itself, so the store's subscribers (the relays)
// are signalled by the time Do returns; a unit that wrote no message, or
// rolled back, signals nothing.
func TestCommitWakesSubscribers(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		// A store without a Listener, so that only this process's units
		// can signal its subscribers.
		st := testdb.Reopen(t, db.Setup, db.DSN, store.Options{Logger: testdb.Logger()})
		b := bundleFor(t, st)
		wake, stop := st.Subscribe()
		defer stop()
		woken := func() bool {
			select {
			case <-wake:
				return true
			default:
				return false
			}
		}
		ctx := context.Background()
		for _, tc := range []struct {
			name  string
			fn    func(ctx context.Context, tx *uow.Tx) error
			wakes bool
		}{
			{"nothing", func(context.Context, *uow.Tx) error { return nil }, false},
			{"no events", func(ctx context.Context, tx *uow.Tx) error {
				a := &Account{Owner: "quiet"}
				a.Init("account", "n-1")
				return b.accounts.Save(ctx, tx, a)
			}, false},
			{"rolled back", func(ctx context.Context, tx *uow.Tx) error {
				if err := b.accounts.Save(ctx, tx, OpenAccount("n-2", "ada")); err != nil {
					return err
				}
				return errors.New("refused")
			}, false},
			{"events", func(ctx context.Context, tx *uow.Tx) error {
				return b.accounts.Save(ctx, tx, OpenAccount("n-3", "ada"))
			}, true},
			{"enqueued", func(ctx context.Context, tx *uow.Tx) error {
				tx.Enqueue(outbox.Message{Name: "mail.sent", Payload: []byte(`{}`)})
				return nil
			}, true},
		} {
			err := b.runner.Do(ctx, tc.fn)
			if (err != nil) != (tc.name == "rolled back") {
				t.Fatalf("%s: Do = %v", tc.name, err)
			}
			if got := woken(); got != tc.wakes {
				t.Errorf("%s: subscriber woken = %v, want %v", tc.name, got, tc.wakes)
			}
		}
		if err := b.runner.DoIdempotent(ctx, "k-1", func(context.Context, *uow.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if woken() {
			t.Error("an idempotent unit that wrote no message woke the subscriber")
		}
	})
}
