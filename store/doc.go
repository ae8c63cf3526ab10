// Package store is keel's side of a database: one value, built once, that
// owns the *sql.DB, its SQL dialect, the names of keel's tables, their
// migrations and the wake-ups that tell relays new messages committed.
// Every constructor that touches the database takes it:
//
//	db, err := sql.Open("sqlite3", sqlite.FileDSN("app.db"))
//	st, err := store.Open(db, sqlite.Dialect(), store.Options{})
//	err = st.Migrate(ctx)
//
//	accounts, err := repository.NewDocument(st, repository.DocumentConfig[*Account]{...})
//	runner, err := uow.New(st, uow.Config{})
//	relay, err := outbox.NewRelay(st, bus, outbox.RelayConfig{})
//
// Because they share the store, a repository, a runner and a relay cannot
// disagree about where keel's tables are: the table prefix and the dialect
// are set here and nowhere else.
//
// # Dialects
//
// A dialect is a value from its own package: sqlite.Dialect() (package
// store/sqlite) or postgres.Dialect() (package store/postgres). Each holds
// its SQL, placeholder style, error classification and embedded
// migrations, and imports no driver, so a program links only the driver it
// opens: mattn/go-sqlite3 or modernc.org/sqlite for SQLite, lib/pq or pgx
// for PostgreSQL. keel builds with CGO_ENABLED=0; with modernc.org/sqlite a
// pure-Go program runs on SQLite too.
//
// # Migrations
//
// Migrate creates or upgrades keel's tables in one call, safely from
// several processes at once. Teams that manage their schema with goose,
// golang-migrate, atlas or plain SQL files take the rendered SQL instead,
// from Migrations or as files from MigrationFS, and apply it with their
// tool; CheckSchema then confirms that the schema is what this version of
// keel needs, and suits a readiness probe.
//
// # Wake-ups
//
// A unit of work that writes outbox messages wakes the relays of its store
// in this process as soon as it commits (Notify). Relays in other
// processes learn of the commit through a Listener, when the database can
// carry one: on PostgreSQL each commit sends a notification, and
// store/postgres/pgxlisten or store/postgres/pqlisten receive it. Without
// a listener, relays find other processes' messages by polling.
package store
