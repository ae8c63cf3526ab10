package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/keel-go/keel/aggregate"
)

// Account is an example aggregate: a struct embedding aggregate.Root.
type Account struct {
	aggregate.Root
	Balance int64 `json:"balance"`
}

// Deposited is an example domain event.
type Deposited struct {
	Amount int64 `json:"amount"`
}

// EventName names the event in storage and on the wire.
func (Deposited) EventName() string { return "account.deposited" }

// NewAccount is Account's constructor: it sets the type and id.
func NewAccount(id string) *Account {
	a := &Account{}
	a.Init("account", id)
	return a
}

// Deposit is a behaviour method: it checks the rule, changes the state and
// records what happened.
func (a *Account) Deposit(amount int64) error {
	if amount <= 0 {
		return errors.New("deposit must be positive")
	}
	a.Balance += amount
	a.Record(Deposited{Amount: amount})
	return nil
}

func ExampleRoot_Record() {
	acct := NewAccount("acc-1")
	_ = acct.Deposit(100)
	_ = acct.Deposit(50)
	fmt.Println(acct.Deposit(-5))

	// Both events are pending until a unit of work commits them to the
	// outbox. Each is stamped with the version its change produces: the
	// account is new (version 0), so one save moves it to version 1.
	for _, env := range acct.Events() {
		fmt.Println(env.Name, env.AggregateType, env.AggregateID, env.AggregateVersion, env.Event)
	}
	fmt.Println(acct.Balance, acct.Version(), acct.IsNew(), acct.HasChanges())
	// Output:
	// deposit must be positive
	// account.deposited account acc-1 1 {100}
	// account.deposited account acc-1 1 {50}
	// 150 0 true true
}

func ExampleRegistry() {
	reg := aggregate.NewRegistry().MustRegister(Deposited{})

	payload, err := reg.Encode(Deposited{Amount: 100})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(payload))

	// A stored name and payload decode into the registered type.
	e, err := reg.Decode("account.deposited", payload)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%T %+v\n", e, e)

	_, err = reg.Decode("account.closed", []byte(`{}`))
	fmt.Println(errors.Is(err, aggregate.ErrUnknownEvent))
	fmt.Println(reg.Names())
	// Output:
	// {"amount":100}
	// aggregate_test.Deposited {Amount:100}
	// true
	// [account.deposited]
}

func ExampleWithMetadata() {
	// A request handler sets the correlation id and a trace header once;
	// the unit of work copies them onto every event recorded in the unit
	// that does not set its own.
	ctx := aggregate.WithMetadata(context.Background(), aggregate.Metadata{
		CorrelationID: "req-42",
		Headers:       map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	})
	md, _ := aggregate.MetadataFrom(ctx)

	acct := NewAccount("acc-1")
	acct.Record(Deposited{Amount: 1})
	acct.RecordWith(Deposited{Amount: 2}, aggregate.Metadata{CorrelationID: "batch-7"})
	for _, env := range acct.Events() {
		env.ApplyMetadata(md)
		fmt.Println(env.Event, env.CorrelationID, len(env.Headers))
	}
	// Output:
	// {1} req-42 1
	// {2} batch-7 1
}
