package store

import "github.com/keel-go/keel/internal/dialect"

// ErrNotMigrated is returned when keel's tables are missing or older than
// this version of keel needs. Run Store.Migrate, or apply Store.Migrations
// with your migration tool.
var ErrNotMigrated = dialect.ErrNotMigrated

// ErrInvalidConfig is wrapped by every keel constructor for an argument or
// configuration field it cannot use; the message names it and the fix.
var ErrInvalidConfig = dialect.ErrInvalidConfig

// ErrBadIdentifier is returned for a table prefix, table or column name
// that is not a plain SQL identifier, which keel refuses so that no name
// can inject SQL.
var ErrBadIdentifier = dialect.ErrBadIdentifier
