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
// Everything starts from one store.Store over the application's database:
//
//	st, err := store.Open(db, postgres.Dialect(), store.Options{})
//	err = st.Migrate(ctx) // keel's tables, the inbox among them
//	runner, err := uow.New(st, uow.Config{})
//
// A Router holds the asynchronous handlers. It runs them through the
// uow.Runner, so they load and save aggregates and record events exactly as
// commands do, in the runner's store, and decodes payloads with the
// application's aggregate.Registry:
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
// must be unique, at most 255 bytes, and must not change between releases.
// Handle also checks the event type against the Registry: a type the
// Registry does not know yet is registered, and one registered in the other
// form (OrderPaid where the handler takes *OrderPaid, or the reverse) is a
// mistake no message could get past. Like http.HandleFunc, Handle panics on
// such registration mistakes, which can only be programming errors.
//
// A Bus delivers a relay's batches to the router. Nothing needs wiring to
// wake the relay: each unit of work that writes outbox rows wakes the
// relays of its store when it commits, and with a store.Options.Listener
// (PostgreSQL) commits in other processes do too.
//
//	bus, err := dispatch.NewBus(router, dispatch.BusConfig{})
//	relay, err := outbox.NewRelay(st, bus, outbox.RelayConfig{})
//	go relay.Run(ctx)
//
// The relay's Outbox method reaches the administration of the outbox:
// relay.Outbox().Stats for dashboards, Parked and Requeue for messages that
// failed for good. A Bus keeps the contract of outbox.Publisher; package
// outbox/publishertest checks it on every database keel supports.
//
// The constructors report arguments they cannot use with errors matching
// store.ErrInvalidConfig, naming the field and the fix. A database without
// keel's tables fails the first delivery with an error matching
// store.ErrNotMigrated that names the inbox table.
//
// # Exactly-once effects
//
// Relays deliver at least once: a crash between a delivery and its
// acknowledgement sends the message again. The Router makes the effects
// happen once anyway. Each handler runs on each message as a unit of work
// of its own, with a row (handler name, message id) in keel's inbox table.
// If the row is already there, the handler took effect before and is
// skipped; if the handler fails, its effects and the row roll back together
// and the handler runs again on redelivery. Handlers are tracked one by
// one: when a message has two handlers and one fails, a redelivery runs
// only that one.
//
// # Batches
//
// The units of many messages share one transaction, so that a commit (and
// its wait for the disk) is paid per group of messages rather than per
// message. Router.DeliverBatch, which the Bus uses, claims the inbox rows
// of a whole group in one statement and runs each unit in a savepoint of
// its own (uow.Batch): a failing unit rolls back to its savepoint, and the
// rest of the group commits. Handlers are written as before; a version
// conflict re-runs only the unit that met it. Should the transaction fail
// as a whole (a lost connection, say), the group's messages are delivered
// again one by one, each handler in a transaction of its own.
//
// A handler that would rather write the effects of many messages in one
// statement registers with HandleBatch: it gets the events of a group at
// once, func(ctx, tx, []E) error, in one unit of work, with MessagesFrom
// for their messages. Its inbox rows are still one per message.
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
// default) one at a time, in order, and several keys in parallel, each
// worker in transactions of up to BusConfig.GroupSize messages. When a
// message fails, the rest of its key waits: the Bus does not run the key's
// later messages of the batch, reporting them with outbox.ErrHeldBack, and
// the relay retries the failed one with backoff, parking it after its last
// attempt. Errors wrapping outbox.ErrPermanent, and messages that cannot be
// decoded (or decode into another type than their handler takes), are
// parked at once; requeue them with relay.Outbox().Requeue after the fix,
// and only the handlers that have not taken effect run.
//
// # Event versions
//
// The Router decodes each message with Message.Decode, at the schema
// version its keel-schema-version header names, so a payload written by an
// older release reaches a handler in the current type through the
// Registry's upcasters, on first delivery, redelivery and requeue alike; a
// message under a renamed event's old name reaches the new name's
// handlers. A version no upcaster leads from is a permanent error naming
// the event and both versions: the message is parked, and a requeue after
// the upcaster is deployed delivers it (see aggregate.Versioned and
// docs/event-evolution.md).
//
// # Processes
//
// Package dispatch/process builds process managers (sagas) on a Router:
// state keyed by a correlation id that events advance, with timeouts and
// compensation, each step delivered as a handler's unit of work is.
//
// # Testing
//
// Package dispatch/dispatchtest runs a unit of work and delivers everything
// it causes through a Router, a Bus and a relay, then reports what was
// published, handled, parked and failed.
//
// # Tracing
//
// A handler finds the message it handles with MessageFrom. Events it records
// carry the message's correlation id (or, when it has none, the message id),
// and the message id as their causation id, so a chain of reactions can be
// followed back to the request that started it.
package dispatch
