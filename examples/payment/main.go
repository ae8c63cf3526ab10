// Command payment is keel's main example. It answers the first question of
// seed 000: a payment gateway takes a deposit through PayPal; the
// application must save the payment record and raise the user's balance,
// atomically.
//
// Payment and Balance are two aggregates, and the deposit changes both in
// one unit of work. That is the thread's accepted answer: one transaction
// spanning both repositories is a sound compromise while they live in the
// same database. Its cost is coupling: the two can no longer move to
// different stores without revisiting this command. The alternative,
// crediting the balance from an asynchronous handler, is shown in the
// transfer example.
//
// The money itself moved at PayPal before the application heard of it. The
// gateway tells the application with a webhook carrying its transaction
// id, and repeats the webhook until it gets an answer, so the same deposit
// may arrive twice, even twice at once. runner.DoIdempotent records the
// transaction id as an idempotency key in the same transaction as the
// deposit: a repeat changes nothing and returns what the first one stored.
//
// After commit, an outbox relay hands the recorded events to an in-process
// bus, whose "send receipt" handler runs once per payment through the
// inbox, even when a lost acknowledgement makes the relay deliver the same
// messages again. Finally, eight goroutines deliver a hundred webhooks, each
// one twice, concurrently: every deposit is applied once, conflicting
// writes to the balance are retried by the unit of work, and the final
// balance is exact.
//
// Run it with:
//
//	go run ./examples/payment
//	go run ./examples/payment -postgres postgres://postgres@127.0.0.1:5432/test?sslmode=disable
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/examples/internal/demo"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

func main() { demo.Main(run) }

// Webhook is the gateway's notice that money arrived.
type Webhook struct {
	GatewayTxn string // the gateway's transaction id, unique per deposit
	UserID     string
	Amount     int64 // cents
}

// Payment is an aggregate: one deposit received through a gateway.
type Payment struct {
	aggregate.Root
	UserID     string `json:"user_id"`
	Amount     int64  `json:"amount"`
	Gateway    string `json:"gateway"`
	GatewayTxn string `json:"gateway_txn"`
}

// PaymentReceived is recorded when a deposit is accepted.
type PaymentReceived struct {
	UserID     string `json:"user_id"`
	Amount     int64  `json:"amount"`
	Gateway    string `json:"gateway"`
	GatewayTxn string `json:"gateway_txn"`
}

// EventName implements aggregate.Event.
func (PaymentReceived) EventName() string { return "payment.received" }

// ReceivePayment records a deposit confirmed by the gateway.
func ReceivePayment(id string, hook Webhook) (*Payment, error) {
	if hook.Amount <= 0 {
		return nil, fmt.Errorf("payment %s: amount must be positive, got %s", id, demo.Money(hook.Amount))
	}
	p := &Payment{UserID: hook.UserID, Amount: hook.Amount, Gateway: "paypal", GatewayTxn: hook.GatewayTxn}
	p.Init("payment", id)
	p.Record(PaymentReceived{UserID: p.UserID, Amount: p.Amount, Gateway: p.Gateway, GatewayTxn: p.GatewayTxn})
	return p, nil
}

// Balance is an aggregate: the funds a user holds with the application.
type Balance struct {
	aggregate.Root
	Amount int64 `json:"amount"`
}

// BalanceOpened is recorded when a user's balance is created.
type BalanceOpened struct{}

// EventName implements aggregate.Event.
func (BalanceOpened) EventName() string { return "balance.opened" }

// BalanceCredited is recorded when funds are added.
type BalanceCredited struct {
	Amount    int64  `json:"amount"`
	PaymentID string `json:"payment_id"`
}

// EventName implements aggregate.Event.
func (BalanceCredited) EventName() string { return "balance.credited" }

// OpenBalance creates an empty balance for a user.
func OpenBalance(userID string) *Balance {
	b := &Balance{}
	b.Init("balance", userID)
	b.Record(BalanceOpened{})
	return b
}

// Credit adds the amount of a payment.
func (b *Balance) Credit(p *Payment) {
	b.Amount += p.Amount
	b.Record(BalanceCredited{Amount: p.Amount, PaymentID: p.ID()})
}

// Receipt is what the receipt handler produces: in a real system a row the
// mailer sends from; here it is only counted.
type Receipt struct {
	aggregate.Root
	UserID string `json:"user_id"`
	Amount int64  `json:"amount"`
}

type app struct {
	st       *store.Store
	runner   *uow.Runner
	payments *repository.Document[*Payment]
	balances *repository.Document[*Balance]
	receipts *repository.Document[*Receipt]

	attempts    atomic.Int64 // runs of the deposit function, retries included
	receiptRuns atomic.Int64 // runs of the receipt handler
}

// deposit is the webhook's command. It returns the payment id, also when
// the webhook is a repeat of one already applied (with an error matching
// uow.ErrDuplicate).
func (a *app) deposit(ctx context.Context, hook Webhook) (string, error) {
	paymentID := "pay-" + hook.GatewayTxn
	err := a.runner.DoIdempotent(ctx, "paypal:"+hook.GatewayTxn, func(ctx context.Context, tx *uow.Tx) error {
		a.attempts.Add(1)
		p, err := ReceivePayment(paymentID, hook)
		if err != nil {
			return err
		}
		b, err := a.balances.Get(ctx, tx, hook.UserID)
		if err != nil {
			return err
		}
		b.Credit(p)
		if err := a.payments.Save(ctx, tx, p); err != nil {
			return err
		}
		if err := a.balances.Save(ctx, tx, b); err != nil {
			return err
		}
		tx.SetResult([]byte(paymentID)) // what a repeat of this webhook gets back
		return nil
	})
	var dup *uow.DuplicateError
	if errors.As(err, &dup) {
		return string(dup.Result), err
	}
	return paymentID, err
}

// sendReceipt is the asynchronous handler for PaymentReceived. It runs in
// a unit of work of its own, after the deposit committed, together with its
// inbox row.
func (a *app) sendReceipt(ctx context.Context, tx *uow.Tx, e PaymentReceived) error {
	a.receiptRuns.Add(1)
	m, _ := dispatch.MessageFrom(ctx)
	r := &Receipt{UserID: e.UserID, Amount: e.Amount}
	r.Init("receipt", m.AggregateID)
	return a.receipts.Save(ctx, tx, r)
}

func run(ctx context.Context, w io.Writer, dsn string) error {
	st, closeDB, err := demo.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer closeDB()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	return tell(ctx, w, st)
}

// tell runs the example on st, whose database has keel's tables: the
// program gives it a fresh database, and the test a storetest one.
func tell(ctx context.Context, w io.Writer, st *store.Store) (err error) {
	a := &app{st: st}
	if a.payments, err = repository.NewDocument(st, repository.DocumentConfig[*Payment]{
		Type: "payment", New: func() *Payment { return new(Payment) },
	}); err != nil {
		return err
	}
	if a.balances, err = repository.NewDocument(st, repository.DocumentConfig[*Balance]{
		Type: "balance", New: func() *Balance { return new(Balance) },
	}); err != nil {
		return err
	}
	if a.receipts, err = repository.NewDocument(st, repository.DocumentConfig[*Receipt]{
		Type: "receipt", New: func() *Receipt { return new(Receipt) },
	}); err != nil {
		return err
	}
	// Every deposit writes the same balance, so concurrent deposits for one
	// user conflict. The default contention policy (uow.Adaptive) handles
	// that: after a conflict, the retry, and for a while every unit, reads
	// the balance with a row lock, so deposits queue instead of retrying.
	if a.runner, err = uow.New(st, uow.Config{}); err != nil {
		return err
	}

	// The asynchronous side: a router with the receipt handler, and a bus
	// that delivers relayed batches to it. Handle registers PaymentReceived
	// in the registry, which decodes payloads for the router.
	router, err := dispatch.NewRouter(a.runner, aggregate.NewRegistry(), dispatch.RouterConfig{})
	if err != nil {
		return err
	}
	dispatch.Handle(router, "mail.send-receipt", a.sendReceipt)
	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
	if err != nil {
		return err
	}

	// 1. The deposit, and the gateway repeating it.
	if err := a.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return a.balances.Save(ctx, tx, OpenBalance("u-1"))
	}); err != nil {
		return err
	}
	fmt.Fprintln(w, "User u-1 has a balance of 0.00.")

	first := Webhook{GatewayTxn: "7XK40918", UserID: "u-1", Amount: 2500}
	fmt.Fprintf(w, "\n1. PayPal webhook %s: u-1 deposited %s.\n", first.GatewayTxn, demo.Money(first.Amount))
	paymentID, err := a.deposit(ctx, first)
	if err != nil {
		return err
	}
	if err := a.report(ctx, w, "u-1", "   One unit saved payment "+paymentID+" and raised the balance"); err != nil {
		return err
	}
	fmt.Fprintln(w, "   PayPal did not get our answer and sends the same webhook again.")
	paymentID, err = a.deposit(ctx, first)
	if !errors.Is(err, uow.ErrDuplicate) {
		return fmt.Errorf("repeated webhook: want uow.ErrDuplicate, got %v", err)
	}
	fmt.Fprintf(w, "   DoIdempotent: key paypal:%s was already applied as %s; nothing changed, answer 200 OK again.\n", first.GatewayTxn, paymentID)
	if err := a.report(ctx, w, "u-1", "   Still"); err != nil {
		return err
	}

	// 2. The relay delivers the outbox to the bus; the first hand-over
	// loses its acknowledgement, so everything is delivered twice.
	fmt.Fprintln(w, "\n2. Start the relay. It hands the outbox to the in-process bus; the first hand-over of")
	fmt.Fprintln(w, "   each message loses its acknowledgement, so the relay delivers each one again.")
	pub := &ackLoss{next: bus, lose: true, seen: map[string]int{}}
	relay, err := outbox.NewRelay(st, pub, outbox.RelayConfig{
		RetryBackoff:    10 * time.Millisecond, // short, for the example; the default is 1s
		MaxPollInterval: 100 * time.Millisecond,
		Logger:          slog.New(slog.DiscardHandler), // the lost acknowledgements would be logged as warnings
	})
	if err != nil {
		return err
	}
	// Every unit that writes to the outbox wakes the relay when it commits;
	// the relay polls only as a safety net.
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() {
		stopRelay()
		err = errors.Join(err, <-relayDone)
	}()

	if err := demo.WaitFor(ctx, "every message delivered twice", func() (bool, error) {
		return pub.deliveredAtLeast(3, 2), nil
	}); err != nil {
		return err
	}
	pub.stopLosing()
	if lo, hi := pub.deliveries(); lo != 2 || hi != 2 {
		return fmt.Errorf("messages were delivered %d to %d times; want 2", lo, hi)
	}
	if n := a.receiptRuns.Load(); n != 1 {
		return fmt.Errorf("the receipt handler ran %d times; want once", n)
	}
	fmt.Fprintln(w, "   The bus received each of the 3 messages (balance.opened, payment.received,")
	fmt.Fprintln(w, "   balance.credited) twice. mail.send-receipt ran once: its inbox row, committed with")
	fmt.Fprintln(w, "   the receipt, made the second delivery a no-op.")
	receipts, err := a.receiptCount(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   Receipts issued: %d.\n", receipts)

	// 3. Concurrent webhooks.
	const webhooks, workers = 100, 8
	fmt.Fprintf(w, "\n3. %d goroutines deliver %d webhooks of 1.00 each; every webhook arrives twice, concurrently.\n", workers, webhooks)
	a.attempts.Store(0)
	var applied, duplicates atomic.Int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			// Workers g and g+4 take the same webhooks in the same order,
			// so every webhook races with its duplicate.
			for i := g % (workers / 2); i < webhooks; i += workers / 2 {
				_, err := a.deposit(ctx, Webhook{GatewayTxn: fmt.Sprintf("8RT%05d", i), UserID: "u-1", Amount: 100})
				switch {
				case err == nil:
					applied.Add(1)
				case errors.Is(err, uow.ErrDuplicate):
					duplicates.Add(1)
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(w, "   Applied %d, refused as duplicates %d.\n", applied.Load(), duplicates.Load())
	b, err := a.balances.Get(ctx, st.DB(), "u-1")
	if err != nil {
		return err
	}
	want := first.Amount + webhooks*100
	if b.Amount != want {
		return fmt.Errorf("balance is %s, want %s", demo.Money(b.Amount), demo.Money(want))
	}
	fmt.Fprintf(w, "   Balance of u-1: %s = %s + %d x 1.00, exact (version %d).\n", demo.Money(b.Amount), demo.Money(first.Amount), webhooks, b.Version())
	if retries := a.attempts.Load() - applied.Load(); retries > 0 {
		fmt.Fprintf(w, "   %d runs lost a race for the balance (version conflict) and Do ran them again.\n", retries)
	} else {
		fmt.Fprintln(w, "   No unit conflicted: SQLite's write lock, taken at BEGIN, queued them. On PostgreSQL")
		fmt.Fprintln(w, "   they overlap, and Do re-runs the ones that lose a race for the balance.")
	}

	if err := demo.WaitFor(ctx, "a receipt for every payment", func() (bool, error) {
		n, err := a.receiptCount(ctx)
		return n == webhooks+1, err
	}); err != nil {
		return err
	}
	fmt.Fprintf(w, "   Receipts issued: %d, one per payment.\n", webhooks+1)

	var stats outbox.Stats
	if err := demo.WaitFor(ctx, "an empty outbox", func() (bool, error) {
		stats, err = relay.Outbox().Stats(ctx)
		return stats.Pending == 0, err
	}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nThe relay has delivered everything: %d pending, %d parked.\n", stats.Pending, stats.Parked)
	return nil
}

// report prints a user's balance after a sentence prefix.
func (a *app) report(ctx context.Context, w io.Writer, userID, prefix string) error {
	b, err := a.balances.Get(ctx, a.st.DB(), userID)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: balance %s (version %d).\n", prefix, demo.Money(b.Amount), b.Version())
	return nil
}

// receiptCount returns how many receipts are stored.
func (a *app) receiptCount(ctx context.Context) (int, error) {
	var n int
	err := a.st.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+a.st.Table("aggregates")+" WHERE aggregate_type = 'receipt'").Scan(&n)
	return n, err
}

// errAckLost is what ackLoss reports for a delivery whose acknowledgement
// it drops.
var errAckLost = errors.New("connection reset before the acknowledgement arrived")

// ackLoss wraps a publisher. While lose is set it passes every batch on
// and then reports each message it sees for the first time as failed, as
// if the acknowledgement had been lost after the delivery succeeded. The
// relay cannot tell the difference, so it delivers those messages again.
type ackLoss struct {
	next outbox.Publisher

	mu   sync.Mutex
	lose bool
	seen map[string]int // deliveries per message id
}

// Publish implements outbox.Publisher.
func (p *ackLoss) Publish(ctx context.Context, batch []outbox.Message) error {
	err := p.next.Publish(ctx, batch)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range batch {
		p.seen[m.ID]++
	}
	if err != nil || !p.lose {
		return err
	}
	errs := make([]error, len(batch))
	lost := false
	for i, m := range batch {
		if p.seen[m.ID] == 1 {
			errs[i], lost = errAckLost, true
		}
	}
	if !lost {
		return nil
	}
	return &outbox.BatchError{Errs: errs}
}

func (p *ackLoss) stopLosing() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lose = false
}

// deliveredAtLeast reports whether n messages were each delivered at least
// times times.
func (p *ackLoss) deliveredAtLeast(n, times int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := 0
	for _, c := range p.seen {
		if c >= times {
			k++
		}
	}
	return k >= n
}

// deliveries returns the fewest and the most deliveries of any message.
func (p *ackLoss) deliveries() (lo, hi int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.seen {
		if lo == 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return lo, hi
}
