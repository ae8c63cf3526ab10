// Package aggstate gives keel's repositories and unit of work the access
// to an aggregate's root that applications must not have: setting its
// version, restoring it after a load, and reading, stamping and clearing
// its pending events. Package aggregate fills these functions in when it
// initialises; only packages inside keel can import this one.
package aggstate

// Functions over an aggregate.Aggregate, set by package aggregate.
var (
	// Restore sets the type, id and version of a loaded aggregate and
	// clears its pending events.
	Restore func(a any, typ, id string, version int64)
	// SetVersion records that a save moved the aggregate to version v.
	SetVersion func(a any, v int64)
	// Pending returns the aggregate's pending events, a
	// []aggregate.Envelope, without copying them. Callers only read it.
	Pending func(a any) any
	// Stamp applies metadata (an aggregate.Metadata) to the pending events
	// from index from on, and returns how many events are pending.
	Stamp func(a any, from int, md any) int
	// MarkCommitted clears the pending events once the transaction that
	// wrote them to the outbox has committed.
	MarkCommitted func(a any)
)
