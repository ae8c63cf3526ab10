package dialect

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// DefaultPrefix is the table-name prefix used when none is configured.
const DefaultPrefix = "keel_"

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ErrBadIdentifier is wrapped by ValidateIdent, ValidateQualifiedIdent and
// Prefix.
var ErrBadIdentifier = errors.New("keel: invalid SQL identifier")

// ValidateIdent checks that name is a plain SQL identifier: a letter or
// underscore followed by letters, digits or underscores, at most 63 bytes.
// what says which setting the name came from, for the error message.
func ValidateIdent(what, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%w: %s %s must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters); schema-qualify tables through the PostgreSQL search_path instead", ErrBadIdentifier, what, Quote(name))
	}
	return nil
}

// ValidateQualifiedIdent is ValidateIdent that also allows one "schema."
// in front of the name.
func ValidateQualifiedIdent(what, name string) error {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return fmt.Errorf("%w: %s %s has more than one dot", ErrBadIdentifier, what, Quote(name))
	}
	for _, p := range parts {
		if !identRE.MatchString(p) {
			return fmt.Errorf("%w: %s %s must be name or schema.name, each matching [A-Za-z_][A-Za-z0-9_]*", ErrBadIdentifier, what, Quote(name))
		}
	}
	return nil
}

// Prefix returns prefix, or DefaultPrefix when it is empty, after checking
// that it can start a table name.
func Prefix(prefix string) (string, error) {
	if prefix == "" {
		return DefaultPrefix, nil
	}
	if err := ValidateIdent("TablePrefix", prefix+"x"); err != nil || len(prefix) > 40 {
		return "", fmt.Errorf("%w: TablePrefix %s must be letters, digits and underscores, start with a letter or underscore, and be at most 40 characters", ErrBadIdentifier, Quote(prefix))
	}
	return prefix, nil
}
