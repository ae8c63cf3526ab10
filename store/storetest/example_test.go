package storetest_test

import (
	"context"
	"fmt"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store/storetest"
	"github.com/keel-go/keel/uow"
)

// A test opens a fresh database with keel's tables in one call, and uses
// it like any other store. In a test, t is the test's *testing.T.
func ExampleOpen() {
	t := new(testdb.ExampleT)
	defer t.Finish()

	st := storetest.Open(t)
	runner, err := uow.New(st, uow.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		tx.Enqueue(outbox.Message{Name: "invoice.sent", Key: "inv-1", Payload: []byte(`{}`)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := runner.Outbox().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("pending:", stats.Pending)
	// Output: pending: 1
}

// Config.Dialect asks for one dialect whatever the environment says; Each
// runs a test on every dialect the environment offers.
func ExampleNew() {
	t := new(testdb.ExampleT)
	defer t.Finish()

	db := storetest.New(t, storetest.Config{Dialect: storetest.SQLite})
	fmt.Println(db.Dialect().Name(), db.Driver == storetest.SQLiteDriver)
	// Output: sqlite true
}
