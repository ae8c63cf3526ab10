// Package dispatchtest runs an application's commands in a test and
// delivers everything they caused, through the application's own Router and
// a real Bus and relay, before the test looks at what happened:
//
//	func TestPlaceOrder(t *testing.T) {
//		st := storetest.Open(t)
//		runner, router := app.Wire(st) // the application's own wiring
//		s := dispatchtest.New(t, runner, router, dispatchtest.Config{})
//
//		err := s.Do(func(ctx context.Context, tx *uow.Tx) error {
//			return app.PlaceOrder(ctx, tx, "o-1", "keel-mug", 3)
//		})
//		if err != nil {
//			t.Fatal(err)
//		}
//		s.RequirePublished("order.placed", "o-1")
//		s.RequirePublished("stock.reserved", "keel-mug")
//		s.RequireHandled("inventory.reserve-stock", 1)
//		s.RequireNothingParked()
//	}
//
// Do runs units of work through the application's uow.Runner and then
// settles: a relay over the runner's store, publishing to a Bus over the
// Router (or to Config.Publisher), is stepped with Drain until no message
// is pending. Events that handlers record on the way are delivered in turn,
// so a cascade (a handler's events reaching more handlers) runs to its end.
// Failed deliveries are retried at once, as a relay would after its
// backoff, and parked after the relay's MaxAttempts; nothing is left in
// flight when Do returns. As with a real relay, the later messages of a key
// whose message is parked wait behind it until it is requeued
// (Relay().Outbox().Requeue, then Settle).
//
// The session then answers what happened: the messages delivered, by name
// and key (Published), the messages each handler applied, read from the
// inbox (Handled), what was parked (Parked), and the delivery errors on the
// way (Errors). Each Require method states one expectation as a sentence
// and, when it does not hold, fails the test with a go-cmp diff (-want
// +got) of what was expected against what happened.
//
// The name follows net/http/httptest: the package that tests code built on
// package dispatch sits beside it, and applications import it only from
// their _test.go files. A session drives its own relay; do not run the
// application's relays over the same store during the test.
package dispatchtest
