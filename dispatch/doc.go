// Package dispatch runs asynchronous event handlers: code that reacts to a
// committed change, after its transaction, exactly once per message.
//
// # Synchronous and asynchronous handlers
//
// keel has two kinds of event handler, registered the same way:
//
//	uow.Handle(runner, "ledger.post", postToLedger)       // synchronous
//	dispatch.Handle(router, "mail.receipt", sendReceipt)  // asynchronous
//
// A synchronous handler (package uow) runs inside the unit of work that
// recorded the event, before commit: its effect commits or rolls back with
// the change that caused it, and its failure fails the command. Use it for
// rules that must hold at once, within one database.
//
// An asynchronous handler (this package) runs after the commit. The event
// reaches it as an outbox message, carried by a relay (outbox.NewRelay) to a
// Bus in this process, or through Kafka to a consumer (package
// dispatch/kafka) in another; both hand it to a Router. Its failure does not
// touch the command; the message is retried instead. Use it for
// effects that may lag: other aggregates, read models, mail, other services.
// Both kinds take the same function type, func(ctx, *uow.Tx, E) error, so a
// handler can move from one to the other without changes.
//
// # Setting up
//
// A Router holds the asynchronous handlers. It runs them through a
// uow.Runner, so they load and save aggregates and record events exactly as
// commands do, and decodes payloads with the application's
// aggregate.Registry:
//
//	router, err := dispatch.NewRouter(runner, registry, dispatch.RouterConfig{})
//	dispatch.Handle(router, "loyalty.award-points", func(ctx context.Context, tx *uow.Tx, e OrderPaid) error {
//		card, err := cards.Get(ctx, tx, e.Customer)
//		if err != nil {
//			return err
//		}
//		card.Award(e.Amount / 100)
//		return cards.Save(ctx, tx, card)
//	})
//
// The name, "loyalty.award-points", keys the handler's rows in the inbox: it
// must be unique and must not change between releases. Like
// http.HandleFunc, Handle panics on registration mistakes (an empty or
// repeated name), which can only be programming errors.
//
// A Bus delivers a relay's batches to the router, and an AfterCommit hook
// wakes the relay as soon as a command commits:
//
//	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
//	relay, err := outbox.NewRelay(db, bus, outbox.RelayConfig{})
//	runner.AfterCommit(func(context.Context, []outbox.Message) { relay.Notify() })
//	go relay.Run(ctx)
//
// # Exactly-once effects
//
// Relays deliver at least once: a crash between a delivery and its
// acknowledgement sends the message again. The Router makes the effects
// happen once anyway. Each handler runs in a unit of work of its own that
// also inserts the row (handler name, message id) into keel's inbox table.
// If the row is already there, the handler took effect before and is
// skipped; if the handler fails, its effects and the row roll back together
// and the handler runs again on redelivery. Handlers are tracked one by
// one: when a message has two handlers and one fails, a redelivery runs
// only that one.
//
// Only effects made through tx are covered. A handler that calls an outside
// service should pass the message id along as an idempotency key, or record
// the call as an outbox message through tx.Enqueue and leave the sending to
// a relay.
//
// The inbox grows by one row per handler and message. Prune it with
// Router.PruneInbox, keeping rows for longer than any redelivery can take.
//
// # Order and failures
//
// A Bus delivers the messages of one partition key (the aggregate id, by
// default) one at a time, in order, and several keys in parallel. When a
// message fails, the rest of its key waits: the relay retries it with
// backoff, and parks it after its last attempt. Errors wrapping
// outbox.ErrPermanent, and messages that cannot be decoded, are parked at
// once; requeue them with Relay.Requeue after the fix, and only the handlers
// that have not taken effect run.
//
// # Tracing
//
// A handler finds the message it handles with MessageFrom. Events it records
// carry the message's correlation id (or, when it has none, the message id),
// and the message id as their causation id, so a chain of reactions can be
// followed back to the request that started it.
package dispatch
