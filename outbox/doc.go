// Package outbox implements the transactional outbox: messages are written
// as rows in the same SQL transaction as the state change that produced
// them, and relays deliver committed rows at least once, in order per
// partition key.
//
// # Writing
//
// EnqueueTx writes messages inside any transaction the caller holds (a
// *sql.Tx, a *sqlx.Tx, or a *uow.Tx); if the transaction rolls back, so do
// the messages. The unit of work in package uow calls it for every event an
// aggregate records, so most applications never call it directly. On
// PostgreSQL each EnqueueTx call also sends one notification, delivered at
// commit, that wakes listening relays in any process.
//
// # Schema
//
// Migrate creates every keel table, for SQLite or PostgreSQL, from
// migrations embedded in the module. Each outbox row carries its own delivery
// state (pending, delivered, parked), so a row whose transaction commits late
// is never skipped, which a relay following a moving sequence cursor can do.
// Each row also carries its partition key and a hash partition of it.
//
// # Relaying
//
// A Relay reads committed rows and hands them to a Publisher in batches:
//
//	relay, err := outbox.NewRelay(db, publisher, outbox.RelayConfig{
//		ListenDSN: dsn, // PostgreSQL: wake on commits in other processes
//	})
//	...
//	go relay.Run(ctx) // until ctx is done; hands its leases back on exit
//
// After a commit in the same process, call relay.Notify to deliver at once;
// the unit of work's after-commit hook does. Otherwise the relay polls,
// every 10ms while there is work, backing off to once a second while idle.
//
// Each round claims up to BatchSize (1000) of the oldest pending rows in one
// statement, publishes them with one Publish call and settles the outcome in
// at most two more statements: delivered rows are deleted, or, with
// Retention set, marked delivered and deleted later by the cleaner in
// bounded batches.
//
// # Several relays
//
// Run as many relays as you like, in one process or many. They share the
// Partitions (64) hash partitions of the partition key through leases: each
// heartbeats, counts the live relays, holds ceil(64/live) partitions,
// renews its leases every LeaseDuration/3 (15s/3 by default), hands back its
// surplus between batches when relays join, and takes over the partitions
// of a relay that stopped renewing once its leases expire. A relay only
// claims rows of partitions it holds, and starts publishing a batch only
// while its leases have more than PublishTimeout left.
//
// Lease times come from each relay's clock, passed as query parameters on
// both dialects: relay hosts need clocks synchronised (NTP) to well within
// LeaseDuration/3.
//
// # Guarantees
//
// Every committed message is published at least once. Messages of one key
// reach the publisher in outbox order, including after failures. In normal
// operation nothing is published twice; a batch may be published again only
// when the relay that had it in flight crashed or lost its leases (a
// database outage or a stalled process longer than LeaseDuration), so
// consumers deduplicate on Message.ID, for example with the inbox table.
//
// Two transactions writing the same key at once are ordered by commit, not
// by seq: a row that commits after a later-numbered row of its key was
// relayed is delivered after it. Serialise writers per key, as the
// aggregate version check of package repository does.
//
// # Failures
//
// A failed message is retried with exponential backoff and jitter
// (RetryBackoff, doubling to MaxRetryBackoff). Its key's later messages wait
// behind it, while other keys flow on: held-back keys are excluded in the
// claim statement, so a stuck key never fills a batch (each claim does skip
// over its backlog, so a huge held-back backlog slows claims). A Publisher
// reports partial failure with a *BatchError. After MaxAttempts (20), or at
// once for an error wrapping ErrPermanent, the message is parked with its
// last error. Policy chooses what parking does to the key: ParkKey (the
// default) keeps its later messages waiting until the parked one is
// requeued, preserving order; SkipMessage lets them go on, leaving a gap.
// Parked, Requeue and RequeueKey inspect and release parked messages, and
// Stats reports pending, retrying and parked counts and the oldest pending
// message's age.
//
// # Operating
//
// Relays log through log/slog (RelayConfig.Logger, slog.Default if unset)
// and report every batch to an optional Observer for metrics.
//
// On PostgreSQL, the claim's plan relies on table statistics, as autovacuum
// keeps them; after bulk-loading an outbox by hand, run ANALYZE.
//
// On SQLite one connection writes at a time: relays in several processes
// work, but their writes queue behind each other and behind the
// application's. Open the database with the options internal/testdb uses:
// _journal_mode=WAL (readers do not block the writer), _busy_timeout=10000
// (wait for the lock instead of failing) and _txlock=immediate (take the
// write lock at BEGIN, so transactions never deadlock upgrading a read lock).
package outbox
