package dialect

import (
	"errors"
	"fmt"
)

// The errors below are keel's shared vocabulary. Package store exports each
// under the same name; other packages wrap them.
var (
	// ErrNotMigrated is returned when keel's tables are missing or older
	// than this version of keel needs.
	ErrNotMigrated = errors.New("keel: schema not migrated; run Store.Migrate, or apply Store.Migrations with your migration tool")
	// ErrInvalidConfig is wrapped by every constructor for an argument or
	// configuration field it cannot use; the message names it and the fix.
	ErrInvalidConfig = errors.New("keel: invalid configuration")
)

// Invalid returns an error wrapping ErrInvalidConfig with a message built
// from format and args.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// WrapMissing wraps err with ErrNotMigrated, naming table, when d
// classifies it as a missing table; other errors are returned unchanged.
func WrapMissing(d Dialect, err error, table string) error {
	if err != nil && d.Classify(err) == MissingTable {
		return fmt.Errorf("%w: table %s is missing: %v", ErrNotMigrated, table, err)
	}
	return err
}

// errClosedText is the text of database/sql's unexported error for a
// closed *sql.DB.
const errClosedText = "sql: database is closed"

// IsClosed reports whether err says the *sql.DB was closed, which no retry
// can fix.
func IsClosed(err error) bool {
	for e := err; e != nil; {
		if e.Error() == errClosedText {
			return true
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				if IsClosed(x) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
