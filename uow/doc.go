// Package uow runs units of work: one SQL transaction that saves every
// aggregate a command changed, with optimistic version checks, and writes
// the domain events they recorded as outbox rows. Either all of it commits
// or none of it does, so an event is never published for a change that was
// rolled back, and never lost for a change that committed.
//
// A Runner is created once per database, over the store that the
// repositories and relays share:
//
//	st, err := store.Open(db, sqlite.Dialect(), store.Options{})
//	err = st.Migrate(ctx)
//	runner, err := uow.New(st, uow.Config{})
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
// Config.Contention decides when those loads lock. By default (Adaptive)
// every first attempt reads optimistically. An aggregate that loses a
// version conflict is then read with a row lock (SELECT ... FOR UPDATE) by
// the unit's retries, which therefore cannot lose to another writer again,
// and by the first attempts of the Runner's other units while it stays hot
// (Config.HotWindow after its last conflict, renewed while conflicts go
// on), so that the writers of a hot aggregate queue on its row instead of
// racing for it. Only the aggregate that conflicted is locked,
// not everything the unit reads. SQLite serialises writers at BEGIN, so
// there is nothing to lock there. LockOnRetry, NeverLock and AlwaysLock
// are the other policies.
//
// Aggregates that recorded events must be saved through a unit of work: a
// repository given a plain *sql.Tx refuses them with
// repository.ErrUntracked, since their events would never reach the
// outbox. Applications that keep their own transaction pass it to Join,
// and keel writes the aggregates' events into it without committing it.
//
// DoIdempotent records a command's idempotency key (at most 255 bytes of
// valid UTF-8) in the same transaction, so a command retried by a client
// is applied once. Handle registers synchronous handlers that run inside
// the transaction; the events they record name the event that caused them.
//
// DoBatch runs many small units in one transaction, each in a savepoint of
// its own (Batch.Do): a unit that fails, or keeps conflicting, is undone
// alone, and the rest commit together, paying one commit for all. The
// asynchronous handlers of package dispatch run this way. Under MySQL's
// REPEATABLE READ a unit re-run after a conflict reads the batch's
// snapshot again, so a conflict with a commit made after the batch began
// persists until the unit runs in a new transaction; choose READ
// COMMITTED (Config.TxOptions) where batched units contend.
//
// Relays need no wiring to learn of new messages: a unit that committed
// outbox rows wakes the relays of its store in this process at once, and on
// PostgreSQL the notification sent with the rows wakes relays in other
// processes whose store has a Listener. Join cannot see the commit, so
// after committing a joined transaction call Store.Notify to wake this
// process's relays; otherwise they find the rows at their next poll.
// AfterCommit hooks remain for other work that must follow a commit.
package uow
