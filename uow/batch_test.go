package uow_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/aggstate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/uow"
)

// TestBatchSavepoints: units of one batch fail alone. A failing unit, a
// panicking one and one that gave up on conflicts leave nothing; the
// others commit together, their events reach the outbox and are marked
// committed, and the hooks run once with every message written.
func TestBatchSavepoints(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{MaxAttempts: 3, MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond})
		b.open(t, "stale")
		var hooked [][]outbox.Message
		b.runner.AfterCommit(func(_ context.Context, msgs []outbox.Message) { hooked = append(hooked, msgs) })
		ctx := context.Background()
		errBoom := errors.New("boom")
		opened := map[string]*Account{}
		save := func(id string, fail error) func(ctx context.Context, tx *uow.Tx) error {
			return func(ctx context.Context, tx *uow.Tx) error {
				a := OpenAccount(id, "ada")
				opened[id] = a
				if err := b.accounts.Save(ctx, tx, a); err != nil {
					return err
				}
				return fail // after the save: the savepoint must undo it
			}
		}
		var staleRuns, batchRuns int
		var unitErrs []error
		var panicked any
		err := b.runner.DoBatch(ctx, func(ctx context.Context, bt *uow.Batch) error {
			batchRuns++
			unitErrs = append(unitErrs[:0],
				bt.Do(ctx, save("ok-1", nil)),
				bt.Do(ctx, save("bad", errBoom)),
				bt.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
					staleRuns++
					a, err := b.accounts.Get(ctx, tx, "stale")
					if err != nil {
						return err
					}
					_ = a.Deposit(5)
					aggstate.SetVersion(a, a.Version()-1) // a stale load, every time
					return b.accounts.Save(ctx, tx, a)
				}),
				bt.Do(ctx, save("ok-2", nil)),
			)
			func() {
				defer func() { panicked = recover() }()
				_ = bt.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
					if err := b.accounts.Save(ctx, tx, OpenAccount("panicky", "ada")); err != nil {
						return err
					}
					panic("nil map somewhere")
				})
			}()
			unitErrs = append(unitErrs, bt.Do(ctx, save("ok-3", nil)))
			return bt.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if batchRuns != 1 {
			t.Errorf("the batch ran %d times, want 1", batchRuns)
		}
		if unitErrs[0] != nil || unitErrs[3] != nil || unitErrs[4] != nil {
			t.Errorf("successful units returned %v, %v, %v", unitErrs[0], unitErrs[3], unitErrs[4])
		}
		if !errors.Is(unitErrs[1], errBoom) {
			t.Errorf("failing unit returned %v, want errBoom", unitErrs[1])
		}
		if !errors.Is(unitErrs[2], repository.ErrConflict) || !strings.Contains(unitErrs[2].Error(), "gave up after 3 attempts") || staleRuns != 3 {
			t.Errorf("conflicting unit ran %d times and returned %v; want 3 runs and a conflict", staleRuns, unitErrs[2])
		}
		if panicked != "nil map somewhere" {
			t.Errorf("recovered %v, want the unit's panic re-raised", panicked)
		}
		for _, id := range []string{"bad", "panicky"} {
			assertAbsent(t, b, id)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_aggregates WHERE aggregate_id IN ('ok-1', 'ok-2', 'ok-3')"); n != 3 {
			t.Errorf("saved accounts = %d, want 3", n)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE aggregate_id IN ('ok-1', 'ok-2', 'ok-3', 'bad', 'panicky', 'stale') AND name = 'account.opened'"); n != 3+1 {
			t.Errorf("account.opened rows = %d, want 4 (three units and the setup's)", n)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE name = 'account.deposited'"); n != 0 {
			t.Errorf("deposits in the outbox = %d, want 0", n)
		}
		if len(hooked) != 1 || len(hooked[0]) != 3 {
			t.Fatalf("hooks ran %d times (%v), want once with 3 messages", len(hooked), hooked)
		}
		for i, id := range []string{"ok-1", "ok-2", "ok-3"} {
			if hooked[0][i].AggregateID != id {
				t.Errorf("hooked message %d is of %s, want %s", i, hooked[0][i].AggregateID, id)
			}
			if opened[id].Version() != 1 || len(opened[id].Events()) != 0 {
				t.Errorf("%s: version %d with %d pending events after the commit; want 1 and 0", id, opened[id].Version(), len(opened[id].Events()))
			}
		}
	})
}

// TestBatchRollsBackWhole: when the function given to DoBatch fails, no
// unit commits, successful ones included, and no hook runs.
func TestBatchRollsBackWhole(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		hooks := 0
		b.runner.AfterCommit(func(context.Context, []outbox.Message) { hooks++ })
		errStop := errors.New("stop")
		err := b.runner.DoBatch(context.Background(), func(ctx context.Context, bt *uow.Batch) error {
			if err := bt.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				return b.accounts.Save(ctx, tx, OpenAccount("first", "ada"))
			}); err != nil {
				return err
			}
			return errStop
		})
		if !errors.Is(err, errStop) {
			t.Fatalf("got %v, want errStop", err)
		}
		assertAbsent(t, b, "first")
		if hooks != 0 {
			t.Errorf("hooks ran %d times after a rollback", hooks)
		}
	})
}
