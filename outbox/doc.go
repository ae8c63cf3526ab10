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
// aggregate records, so most applications never call it directly.
//
// # Schema
//
// Migrate creates every keel table, for SQLite or PostgreSQL, from
// migrations embedded in the module. Each outbox row carries its own delivery
// state (pending, delivered, parked), so a row whose transaction commits late
// is never skipped, which a relay following a moving sequence cursor can do.
// Each row also carries its partition key and a hash partition of it.
package outbox
