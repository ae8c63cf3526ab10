// Command transfer answers a question from seed 002: should a transfer
// between two bank accounts change both in one transaction, or should it
// rely on eventual consistency? It shows both designs on the same Account
// aggregate, and prints the balances at every step to show that no money
// is ever lost.
//
// (a) One transaction. A unit of work debits one account and credits the
// other, and its runner allows a unit to change several aggregates. Either
// both changes commit or neither does. This is the simple answer while
// both accounts live in one database, and the thread grants it: keeping
// transactions to one aggregate is a guideline for contention and scale,
// not a law.
//
// (b) Eventual consistency. Every unit changes one account; its runner
// refuses units that change more. The payer's unit debits the payer and
// records account.transfer_sent. An asynchronous handler, reached through the
// outbox, a relay and the inbox, credits the payee. When the payee cannot
// take the money (the account is closed), the payee records
// account.credit_refused and a second handler refunds the payer: the
// compensating action. Between the debit and the credit the money is in
// transit, but never lost: the event that carries it committed with the
// debit, and the relay delivers it until a handler has taken effect.
//
// Run it with:
//
//	go run ./examples/transfer
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/examples/internal/demo"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

func main() { demo.Main(run) }

// Errors returned by Account's behaviour.
var (
	ErrAccountClosed     = errors.New("account is closed")
	ErrInsufficientFunds = errors.New("insufficient funds")
)

// Account is an aggregate: a balance in cents.
type Account struct {
	aggregate.Root
	Balance int64 `json:"balance"`
	Closed  bool  `json:"closed,omitempty"`
}

// AccountOpened is recorded when an account is opened.
type AccountOpened struct {
	Initial int64 `json:"initial"`
}

// EventName implements aggregate.Event.
func (AccountOpened) EventName() string { return "account.opened" }

// AccountClosed is recorded when an account is closed.
type AccountClosed struct{}

// EventName implements aggregate.Event.
func (AccountClosed) EventName() string { return "account.closed" }

// MoneyDebited is recorded on the payer's account by a transfer that
// credits the payee in the same unit (design a).
type MoneyDebited struct {
	TransferID string `json:"transfer_id"`
	To         string `json:"to"`
	Amount     int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (MoneyDebited) EventName() string { return "account.debited" }

// TransferSent is recorded on the payer's account by a transfer whose
// credit follows asynchronously (design b). It carries the money on its
// way: the handler that credits the payee reacts to it.
type TransferSent struct {
	TransferID string `json:"transfer_id"`
	To         string `json:"to"`
	Amount     int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (TransferSent) EventName() string { return "account.transfer_sent" }

// MoneyCredited is recorded on the payee's account.
type MoneyCredited struct {
	TransferID string `json:"transfer_id"`
	From       string `json:"from"`
	Amount     int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (MoneyCredited) EventName() string { return "account.credited" }

// CreditRefused is recorded on a payee's account that cannot take a credit.
type CreditRefused struct {
	TransferID string `json:"transfer_id"`
	From       string `json:"from"`
	Amount     int64  `json:"amount"`
	Reason     string `json:"reason"`
}

// EventName implements aggregate.Event.
func (CreditRefused) EventName() string { return "account.credit_refused" }

// DebitRefunded is recorded on the payer's account when a transfer is
// undone.
type DebitRefunded struct {
	TransferID string `json:"transfer_id"`
	Amount     int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (DebitRefunded) EventName() string { return "account.refunded" }

// OpenAccount opens an account with an initial balance.
func OpenAccount(id string, initial int64) *Account {
	a := &Account{Balance: initial}
	a.Init("account", id)
	a.Record(AccountOpened{Initial: initial})
	return a
}

// Close closes the account; it takes no more credits.
func (a *Account) Close() {
	if !a.Closed {
		a.Closed = true
		a.Record(AccountClosed{})
	}
}

// Debit takes money out for a transfer whose credit is made in the same
// unit of work.
func (a *Account) Debit(transferID, to string, amount int64) error {
	if err := a.withdraw(amount); err != nil {
		return err
	}
	a.Record(MoneyDebited{TransferID: transferID, To: to, Amount: amount})
	return nil
}

// Send takes money out for a transfer whose credit follows later, from
// the TransferSent event.
func (a *Account) Send(transferID, to string, amount int64) error {
	if err := a.withdraw(amount); err != nil {
		return err
	}
	a.Record(TransferSent{TransferID: transferID, To: to, Amount: amount})
	return nil
}

func (a *Account) withdraw(amount int64) error {
	switch {
	case a.Closed:
		return fmt.Errorf("%w: %s", ErrAccountClosed, a.ID())
	case amount <= 0:
		return fmt.Errorf("%s: amount must be positive, got %s", a.ID(), demo.Money(amount))
	case amount > a.Balance:
		return fmt.Errorf("%w: %s has %s, needs %s", ErrInsufficientFunds, a.ID(), demo.Money(a.Balance), demo.Money(amount))
	}
	a.Balance -= amount
	return nil
}

// Credit puts money in for a transfer.
func (a *Account) Credit(transferID, from string, amount int64) error {
	if a.Closed {
		return fmt.Errorf("%w: %s", ErrAccountClosed, a.ID())
	}
	a.Balance += amount
	a.Record(MoneyCredited{TransferID: transferID, From: from, Amount: amount})
	return nil
}

// RefuseCredit records that a credit was turned away.
func (a *Account) RefuseCredit(transferID, from string, amount int64, reason string) {
	a.Record(CreditRefused{TransferID: transferID, From: from, Amount: amount, Reason: reason})
}

// Refund returns the money of a transfer that could not complete.
func (a *Account) Refund(transferID string, amount int64) {
	a.Balance += amount
	a.Record(DebitRefunded{TransferID: transferID, Amount: amount})
}

type bank struct {
	st       *store.Store
	accounts *repository.Document[*Account]
	multi    *uow.Runner // design (a): may change several aggregates per unit
	single   *uow.Runner // design (b): refuses to

	mu  sync.Mutex
	log []string
}

func (b *bank) note(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log = append(b.log, fmt.Sprintf(format, args...))
}

func (b *bank) flush(w io.Writer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.log {
		fmt.Fprintln(w, l)
	}
	b.log = nil
}

// transferAtomically is design (a): both accounts in one unit.
func (b *bank) transferAtomically(ctx context.Context, id, from, to string, amount int64) error {
	return b.multi.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		payer, err := b.accounts.Get(ctx, tx, from)
		if err != nil {
			return err
		}
		payee, err := b.accounts.Get(ctx, tx, to)
		if err != nil {
			return err
		}
		if err := payer.Debit(id, to, amount); err != nil {
			return err
		}
		if err := payee.Credit(id, from, amount); err != nil {
			return err
		}
		if err := b.accounts.Save(ctx, tx, payer); err != nil {
			return err
		}
		return b.accounts.Save(ctx, tx, payee)
	})
}

// startTransfer is design (b), first step: debit the payer, and nothing
// else. The rest follows from the account.transfer_sent event.
func (b *bank) startTransfer(ctx context.Context, id, from, to string, amount int64) error {
	return b.single.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		payer, err := b.accounts.Get(ctx, tx, from)
		if err != nil {
			return err
		}
		if err := payer.Send(id, to, amount); err != nil {
			return err
		}
		return b.accounts.Save(ctx, tx, payer)
	})
}

// register adds design (b)'s asynchronous handlers.
func (b *bank) register(router *dispatch.Router) {
	dispatch.Handle(router, "transfers.credit-payee", func(ctx context.Context, tx *uow.Tx, e TransferSent) error {
		m, _ := dispatch.MessageFrom(ctx)
		payee, err := b.accounts.Get(ctx, tx, e.To)
		if err != nil {
			return err
		}
		switch err := payee.Credit(e.TransferID, m.AggregateID, e.Amount); {
		case errors.Is(err, ErrAccountClosed):
			// Not an error to retry: the payee's answer is final. Record
			// it, and let the compensation follow from the event.
			payee.RefuseCredit(e.TransferID, m.AggregateID, e.Amount, "account closed")
			b.note("     transfers.credit-payee: %s is closed; it refuses the %s (account.credit_refused)", e.To, demo.Money(e.Amount))
		case err != nil:
			return err
		default:
			b.note("     transfers.credit-payee: %s credited %s (account.credited)", e.To, demo.Money(e.Amount))
		}
		return b.accounts.Save(ctx, tx, payee)
	})
	dispatch.Handle(router, "transfers.refund-payer", func(ctx context.Context, tx *uow.Tx, e CreditRefused) error {
		payer, err := b.accounts.Get(ctx, tx, e.From)
		if err != nil {
			return err
		}
		payer.Refund(e.TransferID, e.Amount)
		b.note("     transfers.refund-payer: %s refunded %s (account.refunded)", e.From, demo.Money(e.Amount))
		return b.accounts.Save(ctx, tx, payer)
	})
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
func tell(ctx context.Context, w io.Writer, st *store.Store) error {
	var err error
	b := &bank{st: st}
	if b.accounts, err = repository.NewDocument(st, repository.DocumentConfig[*Account]{
		Type: "account", New: func() *Account { return new(Account) },
	}); err != nil {
		return err
	}
	if b.multi, err = uow.New(st, uow.Config{MultiAggregate: uow.AllowMultiple}); err != nil {
		return err
	}
	if b.single, err = uow.New(st, uow.Config{MultiAggregate: uow.RefuseMultiple}); err != nil {
		return err
	}
	// The handlers run through the single-aggregate runner too. Handle
	// registers each handler's event type in the registry.
	router, err := dispatch.NewRouter(b.single, aggregate.NewRegistry(), dispatch.RouterConfig{})
	if err != nil {
		return err
	}
	b.register(router)
	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
	if err != nil {
		return err
	}
	relay, err := outbox.NewRelay(st, bus, outbox.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	// settle delivers until nothing is pending. A service runs the relay
	// continuously instead (see the payment example).
	settle := func() error {
		if err := demo.Settle(ctx, relay); err != nil {
			return err
		}
		b.flush(w)
		return nil
	}

	if err := b.single.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return b.accounts.Save(ctx, tx, OpenAccount("alice", 10000))
	}); err != nil {
		return err
	}
	if err := b.single.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		return b.accounts.Save(ctx, tx, OpenAccount("bob", 5000))
	}); err != nil {
		return err
	}
	if err := b.single.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		carol := OpenAccount("carol", 0)
		carol.Close()
		return b.accounts.Save(ctx, tx, carol)
	}); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	const total = 15000
	fmt.Fprint(w, "Accounts: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}
	fmt.Fprintln(w, "carol's account is closed.")

	fmt.Fprintln(w, "\n(a) One unit of work changes both accounts.")
	fmt.Fprintln(w, "  t-1: alice pays bob 30.00.")
	if err := b.transferAtomically(ctx, "t-1", "alice", "bob", 3000); err != nil {
		return err
	}
	fmt.Fprint(w, "     Committed: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}
	fmt.Fprintln(w, "  t-2: alice pays carol 20.00.")
	err = b.transferAtomically(ctx, "t-2", "alice", "carol", 2000)
	if !errors.Is(err, ErrAccountClosed) {
		return fmt.Errorf("t-2: want ErrAccountClosed, got %v", err)
	}
	fmt.Fprintf(w, "     Refused (%v). alice's debit rolled back with the unit:\n     ", err)
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\n(b) Eventual consistency: each unit changes one account.")
	fmt.Fprintln(w, "  t-3: alice pays bob 20.00.")
	if err := b.startTransfer(ctx, "t-3", "alice", "bob", 2000); err != nil {
		return err
	}
	fmt.Fprint(w, "     Debit committed: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}
	fmt.Fprintln(w, "     The relay delivers account.transfer_sent:")
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprint(w, "     Settled: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}

	fmt.Fprintln(w, "  t-4: alice pays carol 25.00.")
	if err := b.startTransfer(ctx, "t-4", "alice", "carol", 2500); err != nil {
		return err
	}
	fmt.Fprint(w, "     Debit committed: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}
	fmt.Fprintln(w, "     The relay delivers account.transfer_sent, then the refusal it leads to:")
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprint(w, "     Settled: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nEvery step added up to 150.00: money was in an account or in a committed event on its way.")
	return nil
}

// balances prints every account's balance and the money in transit, and
// checks that they add up to total. The money in transit is read from the
// outbox: the amounts of transfer_sent and credit_refused events that are
// committed but not yet delivered (state 0 is pending).
func (b *bank) balances(ctx context.Context, w io.Writer, total int64) error {
	rows, err := b.st.DB().QueryContext(ctx, `SELECT payload FROM `+b.st.Table("outbox")+`
		WHERE state = 0 AND name IN ('account.transfer_sent', 'account.credit_refused')`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var inTransit int64
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			return err
		}
		var e struct {
			Amount int64 `json:"amount"`
		}
		if err := json.Unmarshal(payload, &e); err != nil {
			return err
		}
		inTransit += e.Amount
	}
	if err := rows.Err(); err != nil {
		return err
	}

	var parts []string
	var sum int64
	for _, id := range []string{"alice", "bob", "carol"} {
		a, err := b.accounts.Get(ctx, b.st.DB(), id)
		if err != nil {
			return err
		}
		sum += a.Balance
		parts = append(parts, fmt.Sprintf("%s %s", id, demo.Money(a.Balance)))
	}
	sort.Strings(parts)
	if sum+inTransit != total {
		return fmt.Errorf("balances add up to %s with %s in transit; want %s", demo.Money(sum), demo.Money(inTransit), demo.Money(total))
	}
	line := strings.Join(parts, ", ")
	if inTransit > 0 {
		line += fmt.Sprintf("; %s in transit in the outbox", demo.Money(inTransit))
	}
	fmt.Fprintf(w, "%s (total %s).\n", line, demo.Money(sum+inTransit))
	return nil
}
