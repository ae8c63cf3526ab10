package dialect

import (
	"errors"
	"reflect"
	"strings"

	"github.com/lib/pq"
	"github.com/mattn/go-sqlite3"
)

// sqlStater is implemented by lib/pq's *pq.Error and pgx's *pgconn.PgError.
type sqlStater interface{ SQLState() string }

func sqlState(err error) string {
	var s sqlStater
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// IsUniqueViolation reports whether err is a violated unique or primary-key constraint.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if sqlState(err) == "23505" {
		return true
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	return false
}

// IsForeignKeyViolation reports whether err is a violated foreign-key constraint.
func IsForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	if sqlState(err) == "23503" {
		return true
	}
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintForeignKey
}

// IsMissingTable reports whether err says a table does not exist.
func IsMissingTable(err error) bool {
	if err == nil {
		return false
	}
	if sqlState(err) == "42P01" {
		return true
	}
	return strings.Contains(err.Error(), "no such table")
}

// IsTransient reports whether err is a serialization failure, a deadlock or a
// busy database: the transaction may succeed if run again.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	switch sqlState(err) {
	case "40001", "40P01":
		return true
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return false
}

// ConstraintName returns the name of the violated constraint when the driver
// reports it (PostgreSQL does; SQLite reports the columns instead).
func ConstraintName(err error) string {
	var pqe *pq.Error
	if errors.As(err, &pqe) {
		return pqe.Constraint
	}
	// pgx's *pgconn.PgError, found without importing pgx.
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
			if f := v.Elem().FieldByName("ConstraintName"); f.IsValid() && f.Kind() == reflect.String {
				return f.String()
			}
		}
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		// "UNIQUE constraint failed: table.column"
		if i := strings.Index(se.Error(), "failed: "); i >= 0 {
			return se.Error()[i+len("failed: "):]
		}
	}
	return ""
}
