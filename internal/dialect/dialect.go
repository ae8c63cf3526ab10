// Package dialect holds what differs between the SQL databases keel supports:
// placeholder style, column types, error classification and the embedded
// migrations. Public packages resolve a *Dialect once, at construction, and
// keep their statements in the neutral "?" form, rebinding them here.
package dialect

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Names of the supported dialects, as accepted by ByName.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// DefaultPrefix is the table-name prefix used when a configuration leaves it empty.
const DefaultPrefix = "keel_"

// Dialect describes one SQL database family.
type Dialect struct {
	// Name is SQLite or Postgres.
	Name string
}

var (
	sqliteDialect   = &Dialect{Name: SQLite}
	postgresDialect = &Dialect{Name: Postgres}
)

// ErrUnknownDialect is returned when a dialect cannot be named or detected.
var ErrUnknownDialect = errors.New("keel: unknown SQL dialect")

// ByName returns the dialect called name ("sqlite" or "postgres"; "sqlite3",
// "pgx" and "postgresql" are accepted as aliases).
func ByName(name string) (*Dialect, error) {
	switch strings.ToLower(name) {
	case "sqlite", "sqlite3":
		return sqliteDialect, nil
	case "postgres", "postgresql", "pgx", "pq":
		return postgresDialect, nil
	}
	return nil, fmt.Errorf("%w %q: use %q or %q", ErrUnknownDialect, name, SQLite, Postgres)
}

// Resolve returns the dialect named by override, or, when override is empty,
// the one detected from db's driver.
func Resolve(db *sql.DB, override string) (*Dialect, error) {
	if override != "" {
		return ByName(override)
	}
	if db == nil {
		return nil, errors.New("keel: nil *sql.DB; pass an open database handle")
	}
	return Detect(db)
}

// Detect inspects db's driver type. It recognises mattn/go-sqlite3, lib/pq and
// the pgx stdlib driver without importing them.
func Detect(db *sql.DB) (*Dialect, error) {
	t := reflect.TypeOf(db.Driver())
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pkg := t.PkgPath()
	switch {
	case strings.Contains(pkg, "sqlite"):
		return sqliteDialect, nil
	case strings.HasSuffix(pkg, "lib/pq"), strings.Contains(pkg, "jackc/pgx"):
		return postgresDialect, nil
	}
	return nil, fmt.Errorf("%w: cannot tell the dialect of driver %s.%s; set the Dialect field of the configuration to %q or %q",
		ErrUnknownDialect, pkg, t.Name(), SQLite, Postgres)
}

// IsPostgres reports whether d is the PostgreSQL dialect.
func (d *Dialect) IsPostgres() bool { return d.Name == Postgres }

// Rebind rewrites the "?" placeholders of query into the dialect's style.
// Question marks inside single-quoted literals are left alone.
func (d *Dialect) Rebind(query string) string {
	if d.Name != Postgres {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
			b.WriteByte(c)
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Placeholder returns the i-th (1-based) placeholder.
func (d *Dialect) Placeholder(i int) string {
	if d.Name == Postgres {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// Time converts t into the value stored in a timestamp column: TIMESTAMPTZ on
// PostgreSQL, integer Unix microseconds on SQLite.
func (d *Dialect) Time(t time.Time) any {
	if d.Name == Postgres {
		return t.UTC()
	}
	return t.UnixMicro()
}

// NullTime is Time for a nullable column; the zero time becomes NULL.
func (d *Dialect) NullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return d.Time(t)
}

// Timestamp scans a timestamp column written by Dialect.Time, whatever the
// dialect. NULL scans as the zero time.
type Timestamp struct{ time.Time }

// Scan implements sql.Scanner.
func (ts *Timestamp) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		ts.Time = time.Time{}
	case time.Time:
		ts.Time = v.UTC()
	case int64:
		ts.Time = time.UnixMicro(v).UTC()
	case []byte:
		return ts.parse(string(v))
	case string:
		return ts.parse(v)
	default:
		return fmt.Errorf("keel: cannot scan %T into a timestamp", src)
	}
	return nil
}

func (ts *Timestamp) parse(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		ts.Time = time.UnixMicro(n).UTC()
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			ts.Time = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("keel: cannot parse timestamp %q", s)
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ErrBadIdentifier is wrapped by ValidateIdent and ValidatePrefix.
var ErrBadIdentifier = errors.New("keel: invalid SQL identifier")

// ValidateIdent checks that name is a plain SQL identifier: a letter or
// underscore followed by letters, digits or underscores, at most 63 bytes.
// what says which setting the name came from, for the error message.
func ValidateIdent(what, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%w: %s %q must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters); schema-qualify tables through the PostgreSQL search_path instead", ErrBadIdentifier, what, name)
	}
	return nil
}

// QualifiedIdent allows an optional "schema." in front of an identifier.
func ValidateQualifiedIdent(what, name string) error {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return fmt.Errorf("%w: %s %q has more than one dot", ErrBadIdentifier, what, name)
	}
	for _, p := range parts {
		if !identRE.MatchString(p) {
			return fmt.Errorf("%w: %s %q must be name or schema.name, each matching [A-Za-z_][A-Za-z0-9_]*", ErrBadIdentifier, what, name)
		}
	}
	return nil
}

// Prefix returns prefix, or DefaultPrefix when empty, after validating it.
func Prefix(prefix string) (string, error) {
	if prefix == "" {
		return DefaultPrefix, nil
	}
	if err := ValidateIdent("TablePrefix", prefix+"x"); err != nil || len(prefix) > 40 {
		return "", fmt.Errorf("%w: TablePrefix %q must be letters, digits and underscores, start with a letter or underscore, and be at most 40 characters", ErrBadIdentifier, prefix)
	}
	return prefix, nil
}
