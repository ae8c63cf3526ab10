package dispatchtest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/dispatchtest"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store/storetest"
	"github.com/keel-go/keel/uow"
)

// A command, and the cascade it causes, delivered in one call; then the
// test reads what happened. In a test, t is the test's *testing.T.
func ExampleSession() {
	t := new(testdb.ExampleT)
	defer t.Finish()

	shop := wire(t, storetest.Open(t)) // the application's own wiring
	s := dispatchtest.New(t, shop.runner, shop.router, dispatchtest.Config{})

	err := s.Do(func(ctx context.Context, tx *uow.Tx) error { return shop.stockUp(ctx, tx, "mug", 10) })
	fmt.Println("stocked:", err)
	err = s.Do(shop.place("o-1", "mug", 3, 30))
	fmt.Println("placed:", err)

	s.RequirePublishedNames("order.placed o-1", "stock.reserved mug", "order.confirmed o-1")
	s.RequireHandled("orders.confirm", 1)
	s.RequireNothingParked()
	for _, f := range s.Errors() {
		var de *dispatch.DeliveryError
		if errors.As(f.Err, &de) {
			fmt.Println("retried after:", f.Message.Name, de.Handlers())
		}
	}
	fmt.Println("passed:", !t.Failed())
	// Output:
	// stocked: <nil>
	// placed: <nil>
	// retried after: order.placed [mail.receipt]
	// passed: true
}
