package mysql

import (
	"errors"
	"reflect"
	"strings"

	"github.com/keel-go/keel/internal/dialect"
)

// MySQL and MariaDB error numbers keel classifies.
const (
	errDupEntry        = 1062
	errDupEntryKeyName = 1586
	errRowIsReferenced = 1451
	errNoReferencedRow = 1452
	errNoSuchTable     = 1146
	errDupFieldName    = 1060
	errLockWaitTimeout = 1205
	errLockDeadlock    = 1213
)

// errorNumber finds the server's error number in err's chain without
// importing the driver: go-sql-driver/mysql's *MySQLError has a Number
// field.
func errorNumber(err error) (int, string, bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		n := v.FieldByName("Number")
		if n.IsValid() && n.CanUint() {
			msg := ""
			if m := v.FieldByName("Message"); m.IsValid() && m.Kind() == reflect.String {
				msg = m.String()
			}
			return int(n.Uint()), msg, true
		}
	}
	return 0, "", false
}

func (my) Classify(err error) dialect.Class {
	n, msg, ok := errorNumber(err)
	if !ok {
		return dialect.Other
	}
	switch n {
	case errDupEntry, errDupEntryKeyName:
		// "Duplicate entry 'x' for key 'PRIMARY'" on MariaDB,
		// "... for key 'table.PRIMARY'" on MySQL 8.
		if strings.HasSuffix(msg, "PRIMARY'") {
			return dialect.KeyConflict
		}
		return dialect.Unique
	case errRowIsReferenced, errNoReferencedRow:
		return dialect.ForeignKey
	case errNoSuchTable:
		return dialect.MissingTable
	case errDupFieldName:
		return dialect.DuplicateColumn
	case errLockWaitTimeout, errLockDeadlock:
		return dialect.Transient
	}
	return dialect.Other
}

// ConstraintName reads the key or constraint name from the server's
// message: "for key 'drivers_ssn_key'" for a duplicate, "CONSTRAINT
// `vehicles_ibfk_1`" for a foreign key.
func (my) ConstraintName(err error) string {
	n, msg, ok := errorNumber(err)
	if !ok {
		return ""
	}
	switch n {
	case errDupEntry, errDupEntryKeyName:
		if i := strings.LastIndex(msg, "for key '"); i >= 0 {
			name := strings.TrimSuffix(msg[i+len("for key '"):], "'")
			if j := strings.LastIndexByte(name, '.'); j >= 0 { // MySQL 8 prefixes the table
				name = name[j+1:]
			}
			return name
		}
	case errRowIsReferenced, errNoReferencedRow:
		if i := strings.Index(msg, "CONSTRAINT `"); i >= 0 {
			rest := msg[i+len("CONSTRAINT `"):]
			if j := strings.IndexByte(rest, '`'); j >= 0 {
				return rest[:j]
			}
		}
	}
	return ""
}
