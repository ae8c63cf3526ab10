package dialect

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// quoteLimit is how many bytes of a value Quote shows.
const quoteLimit = 64

// Quote returns s quoted for an error message, cut to its first 64 bytes
// with its full length noted when it is longer, so that a huge id cannot
// turn an error into a huge message.
func Quote(s string) string {
	if len(s) <= quoteLimit {
		return strconv.Quote(s)
	}
	cut := quoteLimit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// Size limits of the values keel stores in indexed columns. They hold on
// every dialect, so an application that runs on one runs on all: the
// tightest index is MySQL's, whose InnoDB keys hold at most 3072 bytes.
const (
	// MaxIDBytes bounds message ids, aggregate types, handler names and
	// idempotency keys.
	MaxIDBytes = 255
	// MaxKeyBytes bounds partition keys and aggregate ids.
	MaxKeyBytes = 512
)

// CheckText returns an error naming what when s is longer than limit bytes,
// is not valid UTF-8, or holds a NUL byte: PostgreSQL's text columns accept
// neither, and keel never alters a value to make it fit, so a value one
// database could not store is refused on all of them.
func CheckText(what, s string, limit int) error {
	if limit > 0 && len(s) > limit {
		return fmt.Errorf("%s is %d bytes long; the limit is %d, set by the index that holds it", what, len(s), limit)
	}
	if err := CheckUTF8(what, s); err != nil {
		return err
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %s holds a NUL byte, which text columns cannot store", what, Quote(s))
	}
	return nil
}

// CheckUTF8 returns an error naming what when s is not valid UTF-8. It
// suits text keel stores encoded (message headers travel as JSON, in which
// a NUL byte is an escape like any other).
func CheckUTF8(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %s is not valid UTF-8; keel stores text as given and cannot store these bytes", what, Quote(s))
	}
	return nil
}
