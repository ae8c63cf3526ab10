package uow_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/aggstate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// TestHotAggregate races 32 goroutines making 100 deposits each into one
// account, with the default configuration, on every setup. Every call must
// succeed, and the balance, the version and the outbox rows must come out
// exact. Under the default Adaptive policy a call loses the version race
// at most once: its retry reads the account with a row lock, so it cannot
// lose again (SQLite serialises writers at BEGIN, so there is no race to
// lose at all).
func TestHotAggregate(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		b.open(t, "hot-1")
		const workers, each = 32, 100
		const deposits = workers * each
		var (
			mu   sync.Mutex
			runs = map[int]int{} // runs of fn per call -> calls
			errs []error
			wg   sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					amount := int64(w*each + i + 1) // 1..3200, each once
					n := 0
					err := b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
						n++
						acct, err := b.accounts.Get(ctx, tx, "hot-1")
						if err != nil {
							return err
						}
						if err := acct.Deposit(amount); err != nil {
							return err
						}
						return b.accounts.Save(ctx, tx, acct)
					})
					mu.Lock()
					runs[n]++
					if err != nil {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		t.Logf("calls by runs of fn: %v", runs)
		if len(errs) > 0 {
			t.Fatalf("%d of %d calls failed; first: %v", len(errs), deposits, errs[0])
		}
		acct, err := b.accounts.Get(context.Background(), db.SQL(), "hot-1")
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(deposits * (deposits + 1) / 2); acct.Balance != want {
			t.Errorf("balance = %d, want %d", acct.Balance, want)
		}
		if acct.Version() != deposits+1 {
			t.Errorf("version = %d, want %d", acct.Version(), deposits+1)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE name = 'account.deposited'"); n != deposits {
			t.Errorf("deposit outbox rows = %d, want %d", n, deposits)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(DISTINCT aggregate_version) FROM keel_outbox WHERE name = 'account.deposited' AND aggregate_version BETWEEN 2 AND ?", deposits+1); n != deposits {
			t.Errorf("distinct event versions = %d, want %d", n, deposits)
		}
		if db.Setup.Dialect != "sqlite" {
			// Runs beyond two mean a locked retry conflicted again.
			for n := range runs {
				if n > 2 {
					t.Errorf("%d calls ran fn %d times; a locked retry must not conflict", runs[n], n)
				}
			}
		}
	})
}

// TestContention checks, for each policy, which reads of a unit lock their
// row. A first call loses a real version conflict on its first attempt (it
// loads acc-1 twice and saves both copies) and reads acc-1 and acc-2 on
// every attempt; a second call then reads both once. On the dialects with
// row locks, another connection tries to lock each row with NOWAIT right
// after the unit read it, which fails exactly when the unit holds the lock.
// SQLite has no row locks; there the test checks what the Tx asks of the
// repository.
func TestContention(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		rowLocks := db.Setup.Dialect != "sqlite"
		probe := db.Dialect().Rebind("SELECT version FROM keel_aggregates WHERE aggregate_type = ? AND aggregate_id = ? FOR UPDATE NOWAIT")
		for _, tc := range []struct {
			policy uow.Contention
			// locked lists whether acc-1 and acc-2 are locked by the first
			// call's two attempts and by the second call.
			locked [3][2]bool
		}{
			{uow.Adaptive, [3][2]bool{{false, false}, {true, false}, {true, false}}},
			{uow.LockOnRetry, [3][2]bool{{false, false}, {true, false}, {false, false}}},
			{uow.NeverLock, [3][2]bool{{false, false}, {false, false}, {false, false}}},
			{uow.AlwaysLock, [3][2]bool{{true, true}, {true, true}, {true, true}}},
		} {
			t.Run(tc.policy.String(), func(t *testing.T) {
				// A long window, so that a slow machine cannot let the
				// hot aggregate cool down between the two calls.
				b := setup(t, db, uow.Config{Contention: tc.policy, HotWindow: time.Minute})
				id1, id2 := tc.policy.String()+"-1", tc.policy.String()+"-2"
				b.open(t, id1)
				b.open(t, id2)
				attempt := 0
				// load reads both accounts, checking which it locked.
				load := func(ctx context.Context, tx *uow.Tx) (*Account, error) {
					attempt++
					if attempt > len(tc.locked) {
						t.Fatalf("attempt %d; want %d in all", attempt, len(tc.locked))
					}
					var got [2]bool
					var a1 *Account
					for i, id := range []string{id1, id2} {
						a, err := b.accounts.Get(ctx, tx, id)
						if err != nil {
							return nil, err
						}
						if i == 0 {
							a1 = a
						}
						got[i] = tx.ShouldLock("account", id)
						if rowLocks {
							var v int64
							err := db.SQL().QueryRowContext(ctx, probe, "account", id).Scan(&v)
							if locked := err != nil; locked != got[i] {
								t.Errorf("attempt %d: %s locked = %v (probe: %v), but ShouldLock = %v", attempt, id, locked, err, got[i])
							}
						}
					}
					if got != tc.locked[attempt-1] {
						t.Errorf("attempt %d: ShouldLock(acc-1, acc-2) = %v, want %v", attempt, got, tc.locked[attempt-1])
					}
					return a1, a1.Deposit(1)
				}
				err := b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
					a1, err := load(ctx, tx)
					if err != nil {
						return err
					}
					if attempt == 1 {
						// Save a second copy first, so that a1's save finds
						// a newer version: a real conflict, on any dialect.
						stale, err := b.accounts.Get(ctx, tx, id1)
						if err != nil {
							return err
						}
						if err := stale.Deposit(1000); err != nil {
							return err
						}
						if err := b.accounts.Save(ctx, tx, stale); err != nil {
							return err
						}
					}
					return b.accounts.Save(ctx, tx, a1)
				})
				if err != nil {
					t.Fatal(err)
				}
				if attempt != 2 {
					t.Fatalf("fn ran %d times, want 2 (one conflict, one success)", attempt)
				}
				err = b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
					a1, err := load(ctx, tx)
					if err != nil {
						return err
					}
					return b.accounts.Save(ctx, tx, a1)
				})
				if err != nil {
					t.Fatal(err)
				}
				if a := mustGetAccount(t, b, id1); a.Balance != 2 || a.Version() != 3 {
					t.Errorf("%s: balance %d at version %d, want 2 at version 3 (the first attempt rolled back)", id1, a.Balance, a.Version())
				}
			})
		}
	})
}

// TestHotWindow checks the life of a hot aggregate under Adaptive: a
// conflict seen by Join makes it hot; once HotWindow has passed, one unit
// reads it optimistically as a probe while the next still lock it; when
// no conflict follows for another window, it is cold again.
func TestHotWindow(t *testing.T) {
	t.Parallel()
	db := testdb.Open(t, testdb.SQLiteModernc)
	const window = 300 * time.Millisecond
	b := setup(t, db, uow.Config{HotWindow: window})
	b.open(t, "w-1")
	ctx := context.Background()
	shouldLock := func() (lock bool) {
		err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			lock = tx.ShouldLock("account", "w-1")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return lock
	}
	if shouldLock() {
		t.Fatal("w-1 locked before any conflict")
	}
	tx, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	err = b.runner.Join(ctx, tx, func(ctx context.Context, utx *uow.Tx) error {
		a, err := b.accounts.Get(ctx, utx, "w-1")
		if err != nil {
			return err
		}
		_ = a.Deposit(1)
		aggstate.SetVersion(a, a.Version()+1) // as if loaded before a later write
		return b.accounts.Save(ctx, utx, a)
	})
	if !errors.Is(err, repository.ErrConflict) {
		t.Fatalf("Join = %v, want a conflict", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// Each check below holds only while the window it relies on lasts; a
	// slow machine may overrun it, which skips the check rather than
	// failing it.
	start := time.Now()
	if !shouldLock() && time.Since(start) < window {
		t.Fatal("w-1 not locked right after Join reported its conflict")
	}
	time.Sleep(window - time.Since(start) + 10*time.Millisecond)
	if shouldLock() {
		t.Fatal("the first unit after HotWindow locked w-1; it should read optimistically, as the probe")
	}
	probed := time.Now()
	if !shouldLock() && time.Since(probed) < window {
		t.Fatal("a unit did not lock w-1 while the probe was out")
	}
	time.Sleep(window - time.Since(probed) + 10*time.Millisecond)
	if shouldLock() || shouldLock() {
		t.Fatalf("w-1 still locked a window after a probe that did not conflict")
	}
}

// TestLockedDeadlockRetried makes two units lock the same two accounts in
// opposite orders, so that each waits for the other. The database detects
// the deadlock (PostgreSQL's 40P01, InnoDB's 1213) and aborts one; the
// runner must classify that as transient and run it again, and both units
// must commit.
func TestLockedDeadlockRetried(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		if db.Setup.Dialect == "sqlite" {
			t.Skip("SQLite has no row locks: a second writer waits at BEGIN, so two units cannot deadlock")
		}
		t.Parallel()
		b := setup(t, db, uow.Config{Contention: uow.AlwaysLock})
		b.open(t, "dl-a")
		b.open(t, "dl-b")
		// Each unit's first attempt locks its first account, then waits
		// until the other has locked its own before reaching for it.
		var first sync.WaitGroup
		first.Add(2)
		var mu sync.Mutex
		var attempts []string
		unit := func(name, x, y string) error {
			n := 0
			return b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
				n++
				mu.Lock()
				attempts = append(attempts, name)
				mu.Unlock()
				ax, err := b.accounts.Get(ctx, tx, x)
				if err != nil {
					return err
				}
				if n == 1 {
					first.Done()
					first.Wait()
				}
				ay, err := b.accounts.Get(ctx, tx, y)
				if err != nil {
					return err
				}
				_ = ax.Deposit(1)
				_ = ay.Deposit(1)
				if err := b.accounts.Save(ctx, tx, ax); err != nil {
					return err
				}
				return b.accounts.Save(ctx, tx, ay)
			})
		}
		errs := make(chan error, 2)
		go func() { errs <- unit("ab", "dl-a", "dl-b") }()
		go func() { errs <- unit("ba", "dl-b", "dl-a") }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(attempts)
		// The deadlock costs the victim at least one more run; on a loaded
		// machine a retry may come back before the winner commits and run
		// again, which is still correct.
		if len(attempts) < 3 {
			t.Fatalf("attempts %v; want the deadlock victim run again", attempts)
		}
		for _, id := range []string{"dl-a", "dl-b"} {
			if a := mustGetAccount(t, b, id); a.Balance != 2 || a.Version() != 3 {
				t.Errorf("%s: balance %d at version %d, want 2 at version 3", id, a.Balance, a.Version())
			}
		}
	})
}

func TestContentionConfig(t *testing.T) {
	t.Parallel()
	db := testdb.OpenEmpty(t, testdb.SQLiteModernc)
	_, err := uow.New(db.Store, uow.Config{Contention: uow.AlwaysLock + 1})
	if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "Contention") || !strings.Contains(err.Error(), "LockOnRetry") {
		t.Errorf("err = %v, want ErrInvalidConfig naming Contention and its values", err)
	}
	_, err = uow.New(db.Store, uow.Config{HotWindow: -time.Second})
	if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "HotWindow") {
		t.Errorf("err = %v, want ErrInvalidConfig naming HotWindow", err)
	}
	for c, want := range map[uow.Contention]string{
		uow.Adaptive:    "adaptive",
		uow.LockOnRetry: "lock-on-retry",
		uow.NeverLock:   "never-lock",
		uow.AlwaysLock:  "always-lock",
		7:               "Contention(7)",
	} {
		if got := c.String(); got != want {
			t.Errorf("Contention(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}

// TestJoinLocks checks that a joined transaction follows AlwaysLock too,
// and that a plain *sql.Tx, which gives no advice, reads without a lock.
func TestJoinLocks(t *testing.T) {
	t.Parallel()
	for _, s := range []testdb.Setup{testdb.PostgresPgx, testdb.MariaDB} {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			db := testdb.Open(t, s)
			b := setup(t, db, uow.Config{Contention: uow.AlwaysLock})
			b.open(t, "j-1")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			probe := db.Dialect().Rebind("SELECT version FROM keel_aggregates WHERE aggregate_type = ? AND aggregate_id = ? FOR UPDATE NOWAIT")
			locked := func() bool {
				var v int64
				return db.SQL().QueryRowContext(ctx, probe, "account", "j-1").Scan(&v) != nil
			}
			tx, err := db.SQL().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := b.accounts.Get(ctx, tx, "j-1"); err != nil {
				t.Fatal(err)
			}
			if locked() {
				t.Fatal("Get through a plain *sql.Tx locked the row")
			}
			err = b.runner.Join(ctx, tx, func(ctx context.Context, utx *uow.Tx) error {
				if _, err := b.accounts.Get(ctx, utx, "j-1"); err != nil {
					return err
				}
				if !locked() {
					t.Error("Get through a joined Tx under AlwaysLock did not lock the row")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func mustGetAccount(t *testing.T, b bundle, id string) *Account {
	t.Helper()
	a, err := b.accounts.Get(context.Background(), b.db.SQL(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var _ repository.LockAdvisor = (*uow.Tx)(nil)
