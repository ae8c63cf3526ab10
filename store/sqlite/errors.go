package sqlite

import (
	"errors"
	"reflect"
	"strings"

	"github.com/keel-go/keel/internal/dialect"
)

// SQLite result codes keel classifies.
const (
	codeBusy             = 5
	codeLocked           = 6
	codeConstraintFK     = 787  // SQLITE_CONSTRAINT_FOREIGNKEY
	codeConstraintPK     = 1555 // SQLITE_CONSTRAINT_PRIMARYKEY
	codeConstraintUnique = 2067 // SQLITE_CONSTRAINT_UNIQUE
)

// resultCode finds the SQLite result code in err's chain without importing
// a driver: modernc.org/sqlite's *Error has a Code method returning the
// extended code, and mattn/go-sqlite3's Error has an ExtendedCode field.
func resultCode(err error) (int, bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if c, ok := e.(interface{ Code() int }); ok {
			return c.Code(), true
		}
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct {
			if f := v.FieldByName("ExtendedCode"); f.IsValid() && f.CanInt() {
				return int(f.Int()), true
			}
		}
	}
	return 0, false
}

func (lite) Classify(err error) dialect.Class {
	if err == nil {
		return dialect.Other
	}
	code, ok := resultCode(err)
	if ok {
		switch {
		case code == codeConstraintUnique || code == codeConstraintPK:
			return dialect.Unique
		case code == codeConstraintFK:
			return dialect.ForeignKey
		case code&0xff == codeBusy || code&0xff == codeLocked:
			return dialect.Transient
		}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no such table"):
		return dialect.MissingTable
	case strings.Contains(msg, "UNIQUE constraint failed"), strings.Contains(msg, "PRIMARY KEY constraint failed"):
		return dialect.Unique
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		return dialect.ForeignKey
	case strings.Contains(msg, "duplicate column name"):
		return dialect.DuplicateColumn
	}
	return dialect.Other
}

// ConstraintName returns the columns of a violated unique constraint
// ("drivers.ssn"), which is all SQLite reports; a foreign key has none.
func (lite) ConstraintName(err error) string {
	msg := err.Error()
	i := strings.LastIndex(msg, "constraint failed: ")
	if i < 0 {
		return ""
	}
	name := msg[i+len("constraint failed: "):]
	if j := strings.Index(name, " ("); j >= 0 { // modernc appends " (code)"
		name = name[:j]
	}
	if strings.HasSuffix(name, "constraint failed") { // modernc's prefix before a foreign key's bare message
		return ""
	}
	return name
}
