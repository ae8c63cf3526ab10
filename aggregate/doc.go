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
// Nothing is published by Record: the unit of work (package uow) writes the
// pending envelopes to the outbox in the same transaction that saves the
// aggregate, and marks them committed only after that transaction commits.
//
// A Registry maps event names back to Go types so that a stored payload
// decodes into the struct it was recorded as.
package aggregate
