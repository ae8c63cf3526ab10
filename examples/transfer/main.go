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
// records account.transfer_sent. A transfer process (package
// dispatch/process), keyed by the transfer id, takes it from there: it
// records the debit as a step whose undo is a refund, asks the payee's
// account for the credit, and sets a timer. The payee's account answers:
// credited (the process completes) or refused (the process compensates:
// the payer is refunded). If no answer comes in time, the timer fires and
// the process asks the payee's account to expire the credit; the account
// decides once whether the credit was made, so the money is never both
// credited and refunded. Between the debit and the credit the money is in
// transit, but never lost: it is in a committed event or in the process.
//
// The credit window is two seconds, so the program waits that long for
// the timer; its test moves the store's clock instead.
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
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/process"
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
	Frozen  bool  `json:"frozen,omitempty"` // credits are held for review
	// Credits records the account's answer to each transfer's credit:
	// credited, refused, or held while frozen. An account answers a
	// transfer once.
	Credits map[string]string `json:"credits,omitempty"`
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

// MoneyReceived is recorded on the payee's account by a transfer that
// debits the payer in the same unit (design a).
type MoneyReceived struct {
	TransferID string `json:"transfer_id"`
	From       string `json:"from"`
	Amount     int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (MoneyReceived) EventName() string { return "account.received" }

// MoneyCredited is recorded on the payee's account by a transfer process's
// credit (design b).
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

// CreditHeld is recorded on a frozen payee's account: the credit waits
// for a review, and the account has not answered yet.
type CreditHeld struct {
	TransferID string `json:"transfer_id"`
	Amount     int64  `json:"amount"`
}

// EventName implements aggregate.Event.
func (CreditHeld) EventName() string { return "account.credit_held" }

// AccountFrozen is recorded when an account is frozen for review.
type AccountFrozen struct{}

// EventName implements aggregate.Event.
func (AccountFrozen) EventName() string { return "account.frozen" }

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

// Receive puts money in for a transfer whose debit is made in the same
// unit of work.
func (a *Account) Receive(transferID, from string, amount int64) error {
	if a.Closed {
		return fmt.Errorf("%w: %s", ErrAccountClosed, a.ID())
	}
	a.Balance += amount
	a.Record(MoneyReceived{TransferID: transferID, From: from, Amount: amount})
	return nil
}

// Freeze holds the account's credits for review.
func (a *Account) Freeze() {
	if !a.Frozen {
		a.Frozen = true
		a.Record(AccountFrozen{})
	}
}

// Credit puts money in for a transfer. A closed account refuses it, and a
// frozen one holds it; it returns ErrAccountClosed when it refused. An
// account that already answered the transfer does nothing.
func (a *Account) Credit(transferID, from string, amount int64) error {
	if a.answered(transferID) {
		return nil
	}
	switch {
	case a.Closed:
		a.refuse(transferID, from, amount, "account closed")
		return fmt.Errorf("%w: %s", ErrAccountClosed, a.ID())
	case a.Frozen:
		a.answer(transferID, "held")
		a.Record(CreditHeld{TransferID: transferID, Amount: amount})
		return nil
	}
	a.answer(transferID, "credited")
	a.Balance += amount
	a.Record(MoneyCredited{TransferID: transferID, From: from, Amount: amount})
	return nil
}

// Expire refuses a transfer's credit that the account has not made: one
// held, or not asked for yet. A credit already made stands.
func (a *Account) Expire(transferID, from string, amount int64) {
	if !a.answered(transferID) {
		a.refuse(transferID, from, amount, "timed out")
	}
}

// answered reports whether the account gave its final answer to a
// transfer.
func (a *Account) answered(transferID string) bool {
	s := a.Credits[transferID]
	return s == "credited" || s == "refused"
}

func (a *Account) answer(transferID, s string) {
	if a.Credits == nil {
		a.Credits = map[string]string{}
	}
	a.Credits[transferID] = s
}

func (a *Account) refuse(transferID, from string, amount int64, reason string) {
	a.answer(transferID, "refused")
	a.Record(CreditRefused{TransferID: transferID, From: from, Amount: amount, Reason: reason})
}

// Refund returns the money of a transfer that could not complete.
func (a *Account) Refund(transferID string, amount int64) {
	a.Balance += amount
	a.Record(DebitRefunded{TransferID: transferID, Amount: amount})
}

// The commands of the transfer process, and its timeout.
type (
	// CreditAccount asks the payee's account for a transfer's credit.
	CreditAccount struct {
		TransferID string `json:"transfer_id"`
		From       string `json:"from"`
		To         string `json:"to"`
		Amount     int64  `json:"amount"`
	}
	// ExpireCredit asks the payee's account to refuse a credit it has not
	// made.
	ExpireCredit struct {
		TransferID string `json:"transfer_id"`
		From       string `json:"from"`
		To         string `json:"to"`
		Amount     int64  `json:"amount"`
	}
	// RefundDebit gives the payer its money back: it undoes the debit.
	RefundDebit struct {
		TransferID string `json:"transfer_id"`
		Account    string `json:"account"`
		Amount     int64  `json:"amount"`
	}
	// CreditOverdue is the transfer's timeout: the payee did not answer.
	CreditOverdue struct {
		TransferID string `json:"transfer_id"`
	}
)

// EventName implements aggregate.Event.
func (CreditAccount) EventName() string { return "accounts.credit" }

// EventName implements aggregate.Event.
func (ExpireCredit) EventName() string { return "accounts.expire-credit" }

// EventName implements aggregate.Event.
func (RefundDebit) EventName() string { return "accounts.refund" }

// EventName implements aggregate.Event.
func (CreditOverdue) EventName() string { return "transfer.credit_overdue" }

// CreditWindow is how long a transfer waits for the payee's answer.
const CreditWindow = 2 * time.Second

// Transfer is the state of one transfer process.
type Transfer struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Amount int64  `json:"amount"`
}

type bank struct {
	st        *store.Store
	accounts  *repository.Document[*Account]
	transfers *process.Manager[Transfer]
	multi     *uow.Runner // design (a): may change several aggregates per unit
	single    *uow.Runner // design (b): refuses to

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
		if err := payee.Receive(id, from, amount); err != nil {
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

// register adds design (b)'s transfer process, and the handlers of its
// commands, each a unit of work on one account.
func (b *bank) register(router *dispatch.Router) error {
	var err error
	if b.transfers, err = process.New[Transfer](router, process.Config{Name: "transfer"}); err != nil {
		return err
	}
	m := b.transfers
	process.Start(m, func(e TransferSent) string { return e.TransferID },
		func(ctx context.Context, p *process.Process[Transfer], e TransferSent) error {
			msg, _ := dispatch.MessageFrom(ctx)
			from := msg.AggregateID
			*p.State = Transfer{From: from, To: e.To, Amount: e.Amount}
			p.Step("debit "+from, RefundDebit{TransferID: e.TransferID, Account: from, Amount: e.Amount})
			p.Send(CreditAccount{TransferID: e.TransferID, From: from, To: e.To, Amount: e.Amount})
			p.Schedule("credit", p.Now().Add(CreditWindow), CreditOverdue{TransferID: e.TransferID})
			b.note("     transfer:  %s started: %s debited; credit %s %s; wait %v for the answer", e.TransferID, from, e.To, demo.Money(e.Amount), CreditWindow)
			return nil
		})
	process.On(m, func(e MoneyCredited) string { return e.TransferID },
		func(ctx context.Context, p *process.Process[Transfer], e MoneyCredited) error {
			p.Complete()
			b.note("     transfer:  %s: %s credited; completed", e.TransferID, p.State.To)
			return nil
		})
	process.On(m, func(e CreditRefused) string { return e.TransferID },
		func(ctx context.Context, p *process.Process[Transfer], e CreditRefused) error {
			p.Compensate(e.Reason)
			b.note("     transfer:  %s: credit refused (%s); compensate: refund %s", e.TransferID, e.Reason, p.State.From)
			return nil
		})
	process.On(m, func(e CreditOverdue) string { return e.TransferID },
		func(ctx context.Context, p *process.Process[Transfer], e CreditOverdue) error {
			t := p.State
			p.Send(ExpireCredit{TransferID: e.TransferID, From: t.From, To: t.To, Amount: t.Amount})
			b.note("     transfer:  %s: no answer in %v; ask %s's account to expire the credit", e.TransferID, CreditWindow, t.To)
			return nil
		})

	dispatch.Handle(router, "accounts.credit", func(ctx context.Context, tx *uow.Tx, c CreditAccount) error {
		payee, err := b.accounts.Get(ctx, tx, c.To)
		if err != nil {
			return err
		}
		switch err := payee.Credit(c.TransferID, c.From, c.Amount); {
		case errors.Is(err, ErrAccountClosed):
			// Not an error to retry: the payee's answer is final, and
			// recorded as account.credit_refused.
			b.note("     accounts:  %s is closed; it refuses the %s", c.To, demo.Money(c.Amount))
		case err != nil:
			return err
		case payee.Frozen:
			b.note("     accounts:  %s is frozen for review; the %s is held, no answer yet", c.To, demo.Money(c.Amount))
		default:
			b.note("     accounts:  %s credited %s", c.To, demo.Money(c.Amount))
		}
		return b.accounts.Save(ctx, tx, payee)
	})
	dispatch.Handle(router, "accounts.expire-credit", func(ctx context.Context, tx *uow.Tx, c ExpireCredit) error {
		payee, err := b.accounts.Get(ctx, tx, c.To)
		if err != nil {
			return err
		}
		payee.Expire(c.TransferID, c.From, c.Amount)
		b.note("     accounts:  %s refuses the %s it held (timed out)", c.To, demo.Money(c.Amount))
		return b.accounts.Save(ctx, tx, payee)
	})
	dispatch.Handle(router, "accounts.refund", func(ctx context.Context, tx *uow.Tx, c RefundDebit) error {
		payer, err := b.accounts.Get(ctx, tx, c.Account)
		if err != nil {
			return err
		}
		payer.Refund(c.TransferID, c.Amount)
		b.note("     accounts:  %s refunded %s", c.Account, demo.Money(c.Amount))
		return b.accounts.Save(ctx, tx, payer)
	})
	return nil
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
	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	return tell(ctx, w, st, wait)
}

// tell runs the example on st, whose database has keel's tables: the
// program gives it a fresh database, and the test a storetest one. wait
// lets d pass on st's clock: the program sleeps, and the test moves its
// clock.
func tell(ctx context.Context, w io.Writer, st *store.Store, wait func(d time.Duration) error) error {
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
	if err := b.register(router); err != nil {
		return err
	}
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
	if err := b.single.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		dave := OpenAccount("dave", 0)
		dave.Freeze()
		return b.accounts.Save(ctx, tx, dave)
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
	fmt.Fprintln(w, "carol's account is closed; dave's is frozen for review.")

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
	fmt.Fprintln(w, "     The relay delivers account.transfer_sent to the transfer process, and what follows:")
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
	fmt.Fprintln(w, "     Debit committed; the relay delivers, and carol's refusal leads to a refund:")
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprint(w, "     Settled: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}

	fmt.Fprintln(w, "  t-5: alice pays dave 10.00.")
	if err := b.startTransfer(ctx, "t-5", "alice", "dave", 1000); err != nil {
		return err
	}
	fmt.Fprintln(w, "     Debit committed; the relay delivers:")
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprint(w, "     Waiting: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}
	fmt.Fprintf(w, "     %v later the transfer's timer fires:\n", CreditWindow)
	if err := wait(CreditWindow); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	fmt.Fprint(w, "     Settled: ")
	if err := b.balances(ctx, w, total); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nEvery step added up to 150.00: money was in an account, in a committed event on its way, or held by a transfer process.")
	return nil
}

// balances prints every account's balance and the money in transit, and
// checks that they add up to total. The money in transit is in committed
// messages not yet delivered (state 0 is pending): the transfer_sent of a
// transfer whose process has not started, and a refund on its way; and in
// the running transfer processes, between the debit and the payee's
// answer.
func (b *bank) balances(ctx context.Context, w io.Writer, total int64) error {
	rows, err := b.st.DB().QueryContext(ctx, `SELECT payload FROM `+b.st.Table("outbox")+`
		WHERE state = 0 AND name IN ('account.transfer_sent', 'accounts.refund')`)
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
	running, err := b.transfers.List(ctx, process.ListOptions{})
	if err != nil {
		return err
	}
	held := int64(0)
	for _, p := range running {
		var t Transfer
		if err := json.Unmarshal(p.State, &t); err != nil {
			return err
		}
		held += t.Amount
	}
	inTransit += held

	var parts []string
	var sum int64
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
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
	switch {
	case held > 0:
		line += fmt.Sprintf("; %s in transit, held by %d running transfer process", demo.Money(inTransit), len(running))
	case inTransit > 0:
		line += fmt.Sprintf("; %s in transit in the outbox", demo.Money(inTransit))
	}
	fmt.Fprintf(w, "%s (total %s).\n", line, demo.Money(sum+inTransit))
	return nil
}
