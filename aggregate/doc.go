// Package aggregate provides the embeddable root of a domain aggregate: an
// identity, a version used for optimistic concurrency, and the domain events
// that behaviour methods record.
//
// An aggregate is any struct that embeds Root:
//
//	type Account struct {
//		aggregate.Root
//		Balance int64 `json:"balance"`
//	}
//
//	func (a *Account) Deposit(amount int64) error {
//		if amount <= 0 {
//			return errors.New("deposit must be positive")
//		}
//		a.Balance += amount
//		a.Record(Deposited{Amount: amount})
//		return nil
//	}
//
// Record wraps each event in an Envelope carrying a time-ordered UUIDv7
// message id, the event name, the aggregate's type, id and the version the
// change produces, the time it occurred, and correlation and causation ids.
// Events returns copies of the pending envelopes, and HasChanges reports
// whether there are any.
//
// Nothing is published by Record: the unit of work (package uow) writes the
// pending envelopes to the outbox in the same transaction that saves the
// aggregate, and clears them only after that transaction commits. An
// aggregate with pending events must therefore be saved through a unit of
// work (uow.Runner.Do, or Runner.Join with the application's own
// transaction); a repository given a plain *sql.DB or *sql.Tx refuses it
// with repository.ErrUntracked rather than drop its events.
//
// Applications never set an aggregate's version, restore a loaded one or
// clear its events: repositories and the unit of work do that through a
// package internal to keel, so the bookkeeping cannot be changed by
// accident. WithMetadata puts a correlation id and headers (a W3C
// traceparent, say) in a context; the unit of work copies them onto every
// event recorded in the unit that does not set its own with RecordWith.
//
// A Registry maps event names back to Go types so that a stored payload
// decodes into the struct it was recorded as; Type tells which type, and in
// which form (struct or pointer), a name was registered with.
//
// # Event versions
//
// Stored events outlive their Go types. An event whose payload changed
// shape implements Versioned; Record stamps its SchemaVersion on the
// envelope, and the outbox message carries it in the HeaderSchemaVersion
// header (a message without one is version 1). Upcasters, registered per
// event name and version with Upcast (typed) or Registry.UpcastJSON (raw),
// bring an old payload to the current type one version at a time, and
// Registry.Rename maps an event's old name to its new one. Every decode
// path applies them: the Router's deliveries, redeliveries and requeues,
// and the Kafka consumer. A payload that cannot reach the current version
// is a *VersionError naming the event and both versions, never a decode
// into zero values. See docs/event-evolution.md.
package aggregate
