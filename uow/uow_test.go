package uow_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/aggstate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// Account is the test aggregate: a balance changed by deposits.
type Account struct {
	aggregate.Root
	Owner   string `json:"owner"`
	Balance int64  `json:"balance"`
}

type Opened struct {
	Owner string `json:"owner"`
}

func (Opened) EventName() string { return "account.opened" }

type Deposited struct {
	Amount int64     `json:"amount"`
	At     time.Time `json:"at"`
	Memo   string    `json:"memo,omitempty"`
}

func (Deposited) EventName() string { return "account.deposited" }

func OpenAccount(id, owner string) *Account {
	a := &Account{Owner: owner}
	a.Init("account", id)
	a.Record(Opened{Owner: owner})
	return a
}

func (a *Account) Deposit(amount int64) error {
	if amount <= 0 {
		return fmt.Errorf("deposit must be positive, got %d", amount)
	}
	a.Balance += amount
	a.Record(Deposited{Amount: amount, At: time.Now().UTC().Truncate(time.Microsecond)})
	return nil
}

type bundle struct {
	db       testdb.DB
	runner   *uow.Runner
	accounts *repository.Document[*Account]
}

func setup(t *testing.T, db testdb.DB, cfg uow.Config) bundle {
	t.Helper()
	return bundleWith(t, db, cfg)
}

func bundleFor(tb testing.TB, db testdb.DB) bundle { return bundleWith(tb, db, uow.Config{}) }

func bundleWith(t testing.TB, db testdb.DB, cfg uow.Config) bundle {
	t.Helper()
	runner, err := uow.New(db.Store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := repository.NewDocument(db.Store, repository.DocumentConfig[*Account]{
		Type: "account",
		New:  func() *Account { return &Account{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	return bundle{db: db, runner: runner, accounts: accounts}
}

func (b bundle) open(t *testing.T, id string) {
	t.Helper()
	err := b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
		return b.accounts.Save(ctx, tx, OpenAccount(id, "ada"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLostUpdates races 16 goroutines making 1,000 deposits into one
// account, on every setup: SQLite through both drivers, where writers queue
// on the database's write lock, and PostgreSQL through lib/pq and pgx,
// where they conflict on the version and retry. Before, it ran on SQLite
// (mattn) and lib/pq only. The balance, the version and the outbox rows
// must come out exact: no deposit lost, none applied twice.
func TestLostUpdates(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{MaxAttempts: 1000, MaxBackoff: 20 * time.Millisecond})
		b.open(t, "acc-1")
		const workers, deposits = 16, 1000
		var runs atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, deposits)
		next := make(chan int64, deposits)
		for i := int64(1); i <= deposits; i++ {
			next <- i
		}
		close(next)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for amount := range next {
					errs <- b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
						runs.Add(1)
						acct, err := b.accounts.Get(ctx, tx, "acc-1")
						if err != nil {
							return err
						}
						if err := acct.Deposit(amount); err != nil {
							return err
						}
						return b.accounts.Save(ctx, tx, acct)
					})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		acct, err := b.accounts.Get(context.Background(), db.SQL(), "acc-1")
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(deposits * (deposits + 1) / 2); acct.Balance != want {
			t.Errorf("balance = %d, want %d (lost updates)", acct.Balance, want)
		}
		if acct.Version() != deposits+1 {
			t.Errorf("version = %d, want %d", acct.Version(), deposits+1)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE name = 'account.deposited'"); n != deposits {
			t.Errorf("deposit outbox rows = %d, want %d", n, deposits)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(DISTINCT id) FROM keel_outbox"); n != deposits+1 {
			t.Errorf("distinct message ids = %d, want %d", n, deposits+1)
		}
		// Versions in the outbox are exactly 2..1001, one each.
		if n := testdb.Count(t, db, "SELECT COUNT(DISTINCT aggregate_version) FROM keel_outbox WHERE name = 'account.deposited' AND aggregate_version BETWEEN 2 AND 1001"); n != deposits {
			t.Errorf("distinct event versions = %d, want %d", n, deposits)
		}
		t.Logf("%d runs for %d deposits (%d retried)", runs.Load(), deposits, runs.Load()-deposits)
	})
}

func TestRollback(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		boom := errors.New("boom")
		t.Run("error", func(t *testing.T) {
			err := b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
				if err := b.accounts.Save(ctx, tx, OpenAccount("err-1", "bob")); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
			assertAbsent(t, b, "err-1")
		})
		t.Run("panic", func(t *testing.T) {
			func() {
				defer func() {
					if p := recover(); p != "kaboom" {
						t.Fatalf("recovered %v, want the original panic", p)
					}
				}()
				_ = b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
					if err := b.accounts.Save(ctx, tx, OpenAccount("panic-1", "bob")); err != nil {
						return err
					}
					panic("kaboom")
				})
			}()
			assertAbsent(t, b, "panic-1")
		})
		t.Run("cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				if err := b.accounts.Save(ctx, tx, OpenAccount("cancel-1", "bob")); err != nil {
					return err
				}
				cancel()
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			assertAbsent(t, b, "cancel-1")
			if err := b.runner.Do(ctx, func(context.Context, *uow.Tx) error {
				t.Fatal("fn ran with a cancelled context")
				return nil
			}); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
		t.Run("handler", func(t *testing.T) {
			b := setup(t, db, uow.Config{})
			uow.Handle(b.runner, "refuse-large", func(ctx context.Context, tx *uow.Tx, e Deposited) error {
				if e.Amount > 100 {
					return fmt.Errorf("deposit of %d needs review", e.Amount)
				}
				return nil
			})
			b.open(t, "h-1")
			err := b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
				a, err := b.accounts.Get(ctx, tx, "h-1")
				if err != nil {
					return err
				}
				_ = a.Deposit(500)
				return b.accounts.Save(ctx, tx, a)
			})
			var he *uow.HandlerError
			if !errors.As(err, &he) || he.Handler != "refuse-large" || he.Event != "account.deposited" {
				t.Fatalf("err = %v, want a HandlerError from refuse-large", err)
			}
			a, err := b.accounts.Get(context.Background(), db.SQL(), "h-1")
			if err != nil || a.Balance != 0 || a.Version() != 1 {
				t.Fatalf("after failed handler: %+v %v", a, err)
			}
			if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE aggregate_id = 'h-1'"); n != 1 {
				t.Fatalf("outbox rows = %d, want only the opening event", n)
			}
		})
	})
}

func assertAbsent(t *testing.T, b bundle, id string) {
	t.Helper()
	if _, err := b.accounts.Get(context.Background(), b.db.SQL(), id); !errors.Is(err, repository.ErrNotFound) {
		t.Errorf("Get(%s) = %v, want ErrNotFound", id, err)
	}
	if n := testdb.Count(t, b.db, "SELECT COUNT(*) FROM keel_outbox WHERE aggregate_id = ?", id); n != 0 {
		t.Errorf("%d outbox rows for %s after rollback", n, id)
	}
}

func TestEventRoundTrip(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		reg := aggregate.NewRegistry().MustRegister(Opened{}, Deposited{})
		const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		ctx := aggregate.WithMetadata(context.Background(), aggregate.Metadata{
			CorrelationID: "corr-7", CausationID: "cmd-9",
			Headers: map[string]string{"traceparent": traceparent},
		})
		acct := OpenAccount("rt-1", "grace")
		_ = acct.Deposit(42)
		recorded := acct.Events()
		if err := b.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			return b.accounts.Save(ctx, tx, acct)
		}); err != nil {
			t.Fatal(err)
		}
		if acct.HasChanges() {
			t.Error("events still pending after commit")
		}
		rows, err := db.SQL().Query("SELECT id, name, payload, aggregate_type, aggregate_version, correlation_id, causation_id, headers FROM keel_outbox ORDER BY seq")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		i := 0
		for rows.Next() {
			var id, name, typ, corr, cause, headers string
			var payload []byte
			var version int64
			if err := rows.Scan(&id, &name, &payload, &typ, &version, &corr, &cause, &headers); err != nil {
				t.Fatal(err)
			}
			event, err := reg.Decode(name, payload)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(recorded[i].Event, event); diff != "" {
				t.Errorf("event %d round trip (-recorded +decoded):\n%s", i, diff)
			}
			type row struct {
				ID, Type, Correlation, Causation string
				Version                          int64
				HasTraceparent                   bool
			}
			want := row{recorded[i].ID, "account", "corr-7", "cmd-9", 1, true}
			got := row{id, typ, corr, cause, version, strings.Contains(headers, `"traceparent":"`+traceparent+`"`)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("row %d (-want +got):\n%s", i, diff)
			}
			i++
		}
		if i != 2 {
			t.Fatalf("rows = %d, want 2", i)
		}
	})
}

// Order and Coupon model seed 001: an order paid with gift coupons changes
// several aggregates in one unit.
type Order struct {
	aggregate.Root
	Total int64 `json:"total"`
	Paid  bool  `json:"paid"`
}

type OrderPaid struct {
	Coupons []string `json:"coupons"`
}

func (OrderPaid) EventName() string { return "order.paid" }

type Coupon struct {
	aggregate.Root
	Value    int64 `json:"value"`
	Redeemed bool  `json:"redeemed"`
}

type CouponRedeemed struct {
	Order string `json:"order"`
}

func (CouponRedeemed) EventName() string { return "coupon.redeemed" }

func (c *Coupon) Redeem(order string) error {
	if c.Redeemed {
		return fmt.Errorf("coupon %s already redeemed", c.ID())
	}
	c.Redeemed = true
	c.Record(CouponRedeemed{Order: order})
	return nil
}

func TestMultiAggregate(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		ctx := context.Background()
		orders, _ := repository.NewDocument(db.Store, repository.DocumentConfig[*Order]{Type: "order", New: func() *Order { return &Order{} }})
		coupons, _ := repository.NewDocument(db.Store, repository.DocumentConfig[*Coupon]{Type: "coupon", New: func() *Coupon { return &Coupon{} }})
		runner, err := uow.New(db.Store, uow.Config{})
		if err != nil {
			t.Fatal(err)
		}
		seed := func(id string, redeemed bool) {
			c := &Coupon{Value: 10, Redeemed: redeemed}
			c.Init("coupon", id)
			if err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error { return coupons.Save(ctx, tx, c) }); err != nil {
				t.Fatal(err)
			}
		}
		seed("c1", false)
		seed("c2", false)
		seed("c3", true)
		pay := func(orderID string, couponIDs ...string) error {
			return runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				o := &Order{Total: 20}
				o.Init("order", orderID)
				for _, id := range couponIDs {
					c, err := coupons.Get(ctx, tx, id)
					if err != nil {
						return err
					}
					if err := c.Redeem(orderID); err != nil {
						return err
					}
					if err := coupons.Save(ctx, tx, c); err != nil {
						return err
					}
				}
				o.Paid = true
				o.Record(OrderPaid{Coupons: couponIDs})
				return orders.Save(ctx, tx, o)
			})
		}
		// c3 is already redeemed: nothing of this unit may commit.
		if err := pay("o1", "c1", "c3"); err == nil || !strings.Contains(err.Error(), "already redeemed") {
			t.Fatalf("err = %v", err)
		}
		if c, _ := coupons.Get(ctx, db.SQL(), "c1"); c.Redeemed || c.Version() != 1 {
			t.Fatalf("c1 changed by a rolled-back unit: %+v", c)
		}
		if _, err := orders.Get(ctx, db.SQL(), "o1"); !errors.Is(err, repository.ErrNotFound) {
			t.Fatalf("o1: %v", err)
		}
		if err := pay("o2", "c1", "c2"); err != nil {
			t.Fatal(err)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE name IN ('coupon.redeemed', 'order.paid')"); n != 3 {
			t.Fatalf("outbox rows = %d, want 3", n)
		}
		// The same unit is refused under RefuseMultiple and logged under WarnMultiple.
		strict, err := uow.New(db.Store, uow.Config{MultiAggregate: uow.RefuseMultiple})
		if err != nil {
			t.Fatal(err)
		}
		seed("c4", false)
		err = strict.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
			c, err := coupons.Get(ctx, tx, "c4")
			if err != nil {
				return err
			}
			_ = c.Redeem("o3")
			o := &Order{}
			o.Init("order", "o3")
			o.Record(OrderPaid{})
			if err := coupons.Save(ctx, tx, c); err != nil {
				return err
			}
			return orders.Save(ctx, tx, o)
		})
		if !errors.Is(err, uow.ErrMultipleAggregates) || !strings.Contains(err.Error(), "coupon/c4") {
			t.Fatalf("err = %v, want ErrMultipleAggregates naming coupon/c4", err)
		}
		if c, _ := coupons.Get(ctx, db.SQL(), "c4"); c.Redeemed {
			t.Fatal("refused unit committed")
		}
	})
}

func TestIdempotent(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		b.open(t, "idem-1")
		var applied atomic.Int64
		deposit := func(key string) error {
			return b.runner.DoIdempotent(context.Background(), key, func(ctx context.Context, tx *uow.Tx) error {
				a, err := b.accounts.Get(ctx, tx, "idem-1")
				if err != nil {
					return err
				}
				_ = a.Deposit(5)
				if err := b.accounts.Save(ctx, tx, a); err != nil {
					return err
				}
				applied.Add(1)
				tx.SetResult([]byte(fmt.Sprintf(`{"balance":%d}`, a.Balance)))
				return nil
			})
		}
		if err := deposit("req-1"); err != nil {
			t.Fatal(err)
		}
		err := deposit("req-1")
		var dup *uow.DuplicateError
		if !errors.As(err, &dup) || !errors.Is(err, uow.ErrDuplicate) || string(dup.Result) != `{"balance":5}` {
			t.Fatalf("err = %v (%+v), want DuplicateError with the first result", err, dup)
		}
		// Eight concurrent retries of one new command apply it once.
		var wg sync.WaitGroup
		var dups atomic.Int64
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := deposit("req-2"); errors.Is(err, uow.ErrDuplicate) {
					dups.Add(1)
				} else if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if dups.Load() != 7 {
			t.Errorf("duplicates = %d, want 7", dups.Load())
		}
		a, _ := b.accounts.Get(context.Background(), db.SQL(), "idem-1")
		if a.Balance != 10 {
			t.Errorf("balance = %d, want 10: a command was applied twice", a.Balance)
		}
		if err := b.runner.DoIdempotent(context.Background(), "", func(context.Context, *uow.Tx) error { return nil }); !errors.Is(err, store.ErrInvalidConfig) {
			t.Errorf("empty key: err = %v, want ErrInvalidConfig", err)
		}
	})
}

func TestJoin(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		ctx := context.Background()
		for _, commit := range []bool{false, true} {
			id := fmt.Sprintf("join-%v", commit)
			tx, err := db.SQL().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.runner.Join(ctx, tx, func(ctx context.Context, utx *uow.Tx) error {
				return b.accounts.Save(ctx, utx, OpenAccount(id, "lin"))
			}); err != nil {
				t.Fatal(err)
			}
			// keel must not have committed the caller's transaction.
			if _, err := tx.ExecContext(ctx, "SELECT 1"); err != nil {
				t.Fatalf("caller's tx closed by Join: %v", err)
			}
			if commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if commit {
				want = 1
			}
			if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE aggregate_id = ?", id); n != want {
				t.Errorf("%s: outbox rows = %d, want %d", id, n, want)
			}
		}
	})
}

func TestHandlersAndHooks(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		// A synchronous handler: every opened account gets a welcome bonus
		// account, saved in the same transaction.
		uow.Handle(b.runner, "welcome-bonus", func(ctx context.Context, tx *uow.Tx, e Opened) error {
			env, ok := uow.EnvelopeFrom(ctx)
			if !ok || env.Name != "account.opened" {
				return fmt.Errorf("envelope missing: %+v", env)
			}
			if strings.HasPrefix(env.AggregateID, "bonus-") {
				return nil
			}
			bonus := OpenAccount("bonus-"+env.AggregateID, e.Owner)
			_ = bonus.Deposit(10)
			return b.accounts.Save(ctx, tx, bonus)
		})
		var hooked [][]outbox.Message
		b.runner.AfterCommit(func(_ context.Context, msgs []outbox.Message) { hooked = append(hooked, msgs) })
		b.open(t, "hk-1")
		bonus, err := b.accounts.Get(context.Background(), db.SQL(), "bonus-hk-1")
		if err != nil || bonus.Balance != 10 {
			t.Fatalf("bonus account: %+v %v", bonus, err)
		}
		if len(hooked) != 1 || len(hooked[0]) != 3 {
			t.Fatalf("hook calls = %d (%v), want 1 call with 3 messages", len(hooked), hooked)
		}
		names := []string{hooked[0][0].Name, hooked[0][1].Name, hooked[0][2].Name}
		if diff := cmp.Diff([]string{"account.opened", "account.opened", "account.deposited"}, names); diff != "" {
			t.Errorf("hook messages (-want +got):\n%s", diff)
		}
		// Events recorded by a handler name the event that caused them, and
		// share its correlation (its id, as the unit had none).
		opened := hooked[0][0]
		for _, m := range hooked[0][1:] {
			if m.CausationID != opened.ID || m.CorrelationID != opened.ID {
				t.Errorf("%s: causation %q, correlation %q; want both %q", m.Name, m.CausationID, m.CorrelationID, opened.ID)
			}
		}
		if opened.CausationID != "" || opened.CorrelationID != "" {
			t.Errorf("the command's own event got metadata from nowhere: %+v", opened)
		}
		// A handler that records events forever is stopped.
		loop, _ := uow.New(db.Store, uow.Config{MaxHandlerDepth: 3})
		uow.Handle(loop, "echo", func(ctx context.Context, tx *uow.Tx, e Deposited) error {
			a, err := b.accounts.Get(ctx, tx, "hk-1")
			if err != nil {
				return err
			}
			_ = a.Deposit(1)
			return b.accounts.Save(ctx, tx, a)
		})
		err = loop.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
			a, err := b.accounts.Get(ctx, tx, "hk-1")
			if err != nil {
				return err
			}
			_ = a.Deposit(1)
			return b.accounts.Save(ctx, tx, a)
		})
		if !errors.Is(err, uow.ErrHandlerDepth) {
			t.Fatalf("err = %v, want ErrHandlerDepth", err)
		}
	})
}

func TestConflictGivesUp(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{MaxAttempts: 3, MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond})
		b.open(t, "stale-1")
		var runs int
		err := b.runner.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
			runs++
			a, err := b.accounts.Get(ctx, tx, "stale-1")
			if err != nil {
				return err
			}
			_ = a.Deposit(1)
			aggstate.SetVersion(a, a.Version()-1) // simulate a stale load
			return b.accounts.Save(ctx, tx, a)
		})
		var ce *repository.ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, repository.ErrConflict) {
			t.Fatalf("err = %v, want a ConflictError", err)
		}
		if ce.Expected != 0 || ce.Actual != 1 || runs != 3 {
			t.Errorf("expected=%d actual=%d runs=%d; want 0, 1, 3", ce.Expected, ce.Actual, runs)
		}
	})
}

func TestConfig(t *testing.T) {
	t.Parallel()
	db := testdb.OpenEmpty(t, testdb.SQLiteModernc)
	for _, tc := range []struct {
		cfg  uow.Config
		want string
	}{
		{uow.Config{MaxAttempts: -1}, "MaxAttempts"},
		{uow.Config{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{uow.Config{MultiAggregate: 9}, "MultiAggregate"},
		{uow.Config{MaxHandlerDepth: -1}, "MaxHandlerDepth"},
	} {
		if _, err := uow.New(db.Store, tc.cfg); !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig naming %s", tc.cfg, err, tc.want)
		}
	}
	if _, err := uow.New(nil, uow.Config{}); !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "store.Open") {
		t.Errorf("nil store: err = %v, want ErrInvalidConfig naming store.Open", err)
	}
}

// TestNotMigrated checks that a unit on a database without keel's tables
// fails with store.ErrNotMigrated and says how to fix it.
func TestNotMigrated(t *testing.T) {
	t.Parallel()
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		t.Parallel()
		db := testdb.OpenEmpty(t, s)
		r, err := uow.New(db.Store, uow.Config{})
		if err != nil {
			t.Fatal(err)
		}
		accounts, err := repository.NewDocument(db.Store, repository.DocumentConfig[*Account]{Type: "account", New: func() *Account { return &Account{} }})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Do(context.Background(), func(ctx context.Context, tx *uow.Tx) error {
			return accounts.Save(ctx, tx, OpenAccount("x", "y"))
		})
		if !errors.Is(err, store.ErrNotMigrated) || !strings.Contains(err.Error(), "Migrate") {
			t.Fatalf("Do = %v, want ErrNotMigrated telling to migrate", err)
		}
		err = r.DoIdempotent(context.Background(), "k", func(context.Context, *uow.Tx) error { return nil })
		if !errors.Is(err, store.ErrNotMigrated) || !strings.Contains(err.Error(), "Migrate") {
			t.Fatalf("DoIdempotent = %v, want ErrNotMigrated telling to migrate", err)
		}
	})
}

func TestPruneIdempotencyKeys(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		ctx := context.Background()
		noop := func(context.Context, *uow.Tx) error { return nil }
		for i := 0; i < 5; i++ {
			if err := b.runner.DoIdempotent(ctx, fmt.Sprintf("old-%d", i), noop); err != nil {
				t.Fatal(err)
			}
		}
		// Age the five keys by a day, then record a fresh one.
		dayAgo := db.Dialect().Time(time.Now().Add(-24 * time.Hour))
		if _, err := db.SQL().Exec(db.Dialect().Rebind("UPDATE keel_idempotency SET created_at = ?"), dayAgo); err != nil {
			t.Fatal(err)
		}
		if err := b.runner.DoIdempotent(ctx, "new", noop); err != nil {
			t.Fatal(err)
		}
		n, err := b.runner.PruneIdempotencyKeys(ctx, time.Hour, 2)
		if err != nil || n != 5 {
			t.Fatalf("pruned %d, %v; want 5", n, err)
		}
		if err := b.runner.DoIdempotent(ctx, "new", noop); !errors.Is(err, uow.ErrDuplicate) {
			t.Fatalf("fresh key pruned: %v", err)
		}
		if err := b.runner.DoIdempotent(ctx, "old-1", noop); err != nil {
			t.Fatalf("pruned key still refused: %v", err)
		}
		if _, err := b.runner.PruneIdempotencyKeys(ctx, 0, 0); err == nil {
			t.Error("zero window accepted")
		}
	})
}
