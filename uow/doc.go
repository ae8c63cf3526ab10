// Package uow runs units of work: one SQL transaction that saves every
// aggregate a command changed, with optimistic version checks, and writes
// the domain events they recorded as outbox rows. Either all of it commits
// or none of it does, so an event is never published for a change that was
// rolled back, and never lost for a change that committed.
//
// A Runner is created once per database:
//
//	runner, err := uow.New(db, uow.Config{})
//
// and each command runs through Do:
//
//	err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
//		acct, err := accounts.Get(ctx, tx, id)
//		if err != nil {
//			return err
//		}
//		if err := acct.Deposit(100); err != nil {
//			return err
//		}
//		return accounts.Save(ctx, tx, acct)
//	})
//
// The repository tracks every aggregate it saves through tx; at the end of
// fn the unit writes their pending events to the outbox and commits. A
// version conflict, raised when another writer saved the same aggregate
// first, re-runs the whole function with fresh loads, a bounded number of
// times.
//
// Applications that keep their own transaction pass it to Join, and keel
// writes into it without committing it. DoIdempotent records a command's
// idempotency key in the same transaction, so a command retried by a client
// is applied once. Handle registers synchronous handlers that run inside
// the transaction, and AfterCommit hooks wake a relay as soon as a unit
// commits.
package uow
