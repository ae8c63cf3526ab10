// Package repository loads and saves state-stored aggregates inside the
// caller's transaction, with optimistic versioning.
//
// # Two ways to store an aggregate
//
// Every repository is built over a *store.Store, the value that knows the
// database's dialect and the names of keel's tables:
//
//	st, err := store.Open(db, sqlite.Dialect(), store.Options{})
//	err = st.Migrate(ctx) // or apply st.Migrations() with your own tool
//
// A Document repository stores the aggregate as a JSON document in keel's
// aggregates table, which Store.Migrate creates. It needs no SQL from the
// application:
//
//	accounts, err := repository.NewDocument(st, repository.DocumentConfig[*Account]{
//		Type: "account",
//		New:  func() *Account { return new(Account) },
//	})
//
// A Table repository maps the aggregate onto the application's own table,
// one column per field. Fields returns pointers to the stored fields, in
// the order of Columns; Save reads through them and Get scans into them:
//
//	drivers, err := repository.NewTable(st, repository.TableConfig[*Driver]{
//		Table:   "drivers",
//		Type:    "driver",
//		New:     func() *Driver { return new(Driver) },
//		Columns: []string{"name", "ssn"},
//		Fields:  func(d *Driver) []any { return []any{&d.Name, &d.SSN} },
//	})
//
// The table keeps its own constraints, which is how a rule over a whole set
// of aggregates is enforced: with a unique constraint on ssn, saving a
// second driver with the same social security number returns a
// *ConstraintError matching ErrUniqueViolation. Columns and Fields may be
// left out when the struct's fields carry sqlx-style `db:"column"` tags.
//
// Both repositories implement Repository. Every method takes a Querier, so
// it runs in whatever the caller passes: a *sql.DB, a *sql.Tx, a *sqlx.Tx or
// the unit of work's transaction.
//
// Ids are at most 512 bytes of valid UTF-8; any other id is refused with an
// error matching ErrInvalidID before it reaches the database. Error
// messages quote ids cut to their first 64 bytes.
//
// # Versions and conflicts
//
// A new aggregate has version 0. Save inserts it at version 1; an id that is
// already stored is a conflict. Get restores the stored version, and Save of
// an aggregate loaded at version v updates the row only where the version
// is still v, moving it to v+1. When another writer got there first, Save
// returns a *ConflictError carrying the expected and the stored version,
// and errors.Is(err, ErrConflict) holds; reload and try again. Delete is
// versioned the same way.
//
// # Pessimistic locking
//
// Where conflicts would be frequent, GetForUpdate loads the aggregate and
// locks it until the transaction ends, so concurrent commands queue instead
// of failing. PostgreSQL and MySQL read with SELECT ... FOR UPDATE. SQLite has no
// row locks; open it with _txlock=immediate and every transaction takes the
// database's write lock at BEGIN, which serialises the read already.
//
// A unit of work decides for itself when Get should lock: its transaction
// is a LockAdvisor, and by default (uow.Adaptive) it asks for the lock on an
// aggregate that has just lost a version conflict, so the retry waits for
// the row instead of losing again, and on the first attempts of other units
// while that aggregate stays hot. Get through a plain *sql.Tx never locks.
//
// # Events and the unit of work
//
// Repositories never write events and never clear them. After a successful
// Save or Delete, a repository calls Track on its Querier if the Querier is
// a Tracker. The unit of work's transaction is one: it writes the
// aggregate's pending events to the outbox in the same transaction and
// marks them committed once that transaction commits.
//
// A Querier that is not a Tracker (a *sql.DB, *sql.Tx, *sql.Conn or sqlx
// handle) cannot carry events to the outbox, so Save and Delete refuse an
// aggregate with pending events through it, with an error matching
// ErrUntracked, and store nothing. Run such changes in a unit of work:
// uow.Runner.Do, or Runner.Join with the transaction the application
// already holds. An aggregate without pending events saves through any
// Querier.
package repository
