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
// commit, that wakes listening relays in any process (unless the store's
// Options.DisableNotify is set).
//
// # Scheduled messages
//
// A message whose NotBefore is later than now is scheduled: written in the
// same transaction, kept outside the outbox until that time (holding none
// of its key's other messages back), then moved into the outbox by a
// running relay and delivered in order with its key's messages pending
// then. CancelTx cancels it in a later transaction, and reports, with
// ErrNotScheduled, one that already fell due. Relays sleep until the next
// due time, so a timer fires within milliseconds of it.
//
// # Schema
//
// keel's tables belong to a store (package store): open it once over the
// application's *sql.DB with its dialect, create the tables, and hand it to
// every constructor, so the outbox, its relays and the units of work all
// agree on the table prefix:
//
//	st, err := store.Open(db, postgres.Dialect(), store.Options{
//		Listener: pgxlisten.New(db), // PostgreSQL: wake on commits in other processes
//	})
//	err = st.Migrate(ctx) // or apply st.Migrations with your own tool
//	ob, err := outbox.New(st)
//
// Each outbox row carries its own delivery state (pending, delivered,
// parked), so a row whose transaction commits late is never skipped, which
// a relay following a moving sequence cursor can do. Each row also carries
// its partition key and a hash partition of it.
//
// # Relaying
//
// A Relay reads committed rows and hands them to a Publisher in batches:
//
//	relay, err := outbox.NewRelay(st, publisher, outbox.RelayConfig{})
//	...
//	go relay.Run(ctx) // until ctx is done; hands its leases back on exit
//
// A relay wakes at once after every commit in its process that wrote outbox
// rows: units of work and Outbox.Enqueue notify the store (Store.Notify)
// when they commit, so no wiring is needed; after committing a transaction
// of your own that called EnqueueTx, call st.Notify. On PostgreSQL, a store
// with a Listener (pgxlisten or pqlisten) also wakes its relays on commits
// in other processes, which notify the database in the same statement as
// their INSERT. Otherwise the relay polls, every 10ms while there is work,
// backing off to once a second while idle.
//
// Run checks the schema first and returns an error wrapping
// store.ErrNotMigrated if it is missing. It returns, logging why at Error
// level, only for errors no retry can fix (a missing schema, a closed
// *sql.DB); database errors on the way are logged and retried.
//
// Each round claims up to BatchSize (1000) of the oldest pending rows in one
// statement, publishes them with one Publish call and settles the outcome:
// delivered rows are deleted in a statement of their own, or, with
// Retention set, marked delivered and deleted later by the cleaner in
// bounded batches; failures are recorded in one more. The claim and settle
// statements are prepared once per Run or Drain.
//
// # Pipelining
//
// A relay keeps up to MaxInFlight batches in flight (two by default). While
// a batch publishes, the relay claims the next one, leaving out the
// partition keys of every batch in flight, and publishes it at once, in a
// Publish call of its own: a key whose messages are slow to publish (a
// handler waiting on a remote service, say) holds up only the batch it is
// in, and the other keys flow past it. Batches settle in whatever order
// they finish. A key becomes claimable again only once its batch's outcome
// is recorded, so order and failures work as with one batch at a time: a
// key's later messages are claimed only after its earlier ones were
// delivered, or their failure recorded, which holds the key back. A claim
// beside batches in flight reads rows up to a window of about one batch
// beyond the newest row claimed, so that when every key within reach is in
// flight it reads a window, not the whole backlog; it then waits for a
// batch to finish, a commit, or a backoff from MinPollInterval to
// MaxPollInterval before claiming ahead again. (On MySQL and MariaDB,
// which test a list parameter anew for every row, the relay drops the rows
// of keys in flight itself, asking for that many more rows.)
//
// Leases and PublishTimeout apply to each batch: none starts publishing
// unless the leases have more than PublishTimeout left, and a partition is
// handed over only while no batch of it is in flight. Stopping cancels every Publish in flight and
// records each batch's outcome before Run returns. MaxInFlight 1 publishes
// one batch at a time.
//
// Batches are sized to the publisher's pace: a relay claims fewer than
// BatchSize rows while the time per message of earlier batches says a full
// batch would not publish within half of PublishTimeout, and a batch that
// runs into the timeout halves the next ones at once. Slow, I/O-bound
// destinations so get batches they can finish in time, without tuning.
//
// # Several relays
//
// Run as many relays as you like, in one process or many. They share the
// Partitions (64) hash partitions of the partition key through leases: each
// heartbeats, counts the live relays, holds ceil(64/live) partitions,
// renews its leases every LeaseDuration/3 (15s/3 by default), hands back its
// surplus when relays join (a partition once no batch of it is in flight),
// and takes over the partitions
// of a relay that stopped renewing once its leases expire. A relay only
// claims rows of partitions it holds, and starts publishing a batch only
// while its leases have more than PublishTimeout left.
//
// Lease times come from each relay's clock, passed as query parameters on
// every dialect: relay hosts need clocks synchronised (NTP) to well within
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
//
// If the database refuses to record a failure, the relay retries the
// failures row by row, logs each one it still cannot record at Error level,
// counts it in BatchReport.Unrecorded, and leaves that key out of its claims
// until the message's retry time: the message stays pending, is not sent in
// a tight loop, and other keys flow on.
//
// # Administration
//
// Administration needs only the store, no relay and no Publisher:
// Outbox.Stats reports pending, retrying and parked counts and the oldest
// pending message's age; Parked lists parked messages with their last
// error, of one key, event name or error; Lookup reads one message in any
// state. Requeue, RequeueKey and RequeueError release parked messages (and
// wake the relays, in other processes too where the dialect can); Cleanup
// deletes delivered rows kept for retention. A relay's own outbox is
// Relay.Outbox.
//
// When many messages are parked, two summaries show what went wrong.
// ParkedKeys lists the keys with parked messages, oldest first, each with
// its count and its oldest parked message, the one that holds the key
// back; the database groups them, reading an index of the parked rows
// only. ParkedErrors groups the parked messages by the fingerprint of
// their last error: ErrorPattern replaces the numbers, ids and quoted
// values of an error text with placeholders, and ErrorFingerprint names
// the pattern, so that "order 17: timeout after 3s" and "order 912:
// timeout after 5s" count as one cause. A group's fingerprint lists its
// messages (ParkedQuery.Error) and requeues them all (RequeueError) once
// the cause is fixed; a key's order holds, since a requeued message still
// waits behind an earlier parked message of its key.
//
// Leases shows which relay holds which partition, and Relays lists the
// live relays with how many messages each delivered since it started,
// written with its heartbeats: two reads some time apart give the delivery
// rate of each relay, from the database alone.
//
// # Messages
//
// EnqueueTx checks every message before writing any: a Name and a non-nil
// Payload are required, an ID may be at most 255 bytes and a partition key
// at most 512 (the indexes that hold them set these limits, on every
// dialect), and every text field and header must be valid UTF-8. keel stores
// text as given or not at all: a message that breaks a rule fails the call
// with an error wrapping ErrInvalidMessage, and nothing of the call is
// written.
//
// # Operating
//
// Relays log through log/slog (RelayConfig.Logger, else the store's logger)
// and report every batch to an optional Observer for metrics.
//
// On PostgreSQL, the claim's plan relies on table statistics, as autovacuum
// keeps them; after bulk-loading an outbox by hand, run ANALYZE.
//
// MySQL and MariaDB have no LISTEN: units of work and Enqueue wake the
// relays of their own process at commit, and relays in other processes find
// new rows by polling, within MaxPollInterval. Open the database with the
// options of mysql.DSNOptions.
//
// On SQLite one connection writes at a time: relays in several processes
// work, but their writes queue behind each other and behind the
// application's, and not first come, first served: a connection writing in
// a tight loop can keep a relay from the write lock for seconds. A relay
// that cannot renew its leases within LeaseDuration loses them, and its
// batch in flight may be published again; keep LeaseDuration well above
// the longest such wait. Open the database with the options of sqlite.DSNOptions,
// or a file name through sqlite.FileDSN: write-ahead logging (readers do not
// block the writer), a busy timeout (wait for the lock instead of failing)
// and _txlock=immediate (take the write lock at BEGIN, so transactions never
// deadlock upgrading a read lock).
package outbox
