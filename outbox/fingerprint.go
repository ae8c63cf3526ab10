package outbox

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"
)

// patternLimit is the most bytes ErrorPattern returns: enough to tell
// errors apart, short enough to show in a list.
const patternLimit = 200

// ErrorPattern returns an error text with its variable parts replaced by
// placeholders, so that the errors of one cause share one pattern: "order
// 17: timeout after 3s" and "order 912: timeout after 5s" both become
// "order #: timeout after #s".
//
// Each run of ASCII digits becomes "#", and so does each UUID, hex number
// written with 0x, and hex string of 8 or more characters with a digit in
// it (a hash, an id), as a whole. A string quoted with ', " or ` becomes
// its quotes around "?": a quote opens at a quote character and closes at
// the next one of the same kind, and one with no closing character is
// kept as it is. Whitespace runs collapse to one space, leading and
// trailing whitespace is dropped, and the result is cut to 200 bytes, on
// a rune boundary.
//
// A pattern is its own pattern (ErrorPattern(ErrorPattern(s)) ==
// ErrorPattern(s)): no placeholder holds a digit, and outside quotes a
// pattern holds none, so a pattern read back from a list finds its group.
// The result is valid UTF-8 when text is.
func ErrorPattern(text string) string {
	var b strings.Builder
	space := false // whitespace seen since the last text written
	write := func(s string) {
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(s)
	}
	// Past the limit nothing more can be kept, so the scan stops there.
	for i := 0; i < len(text) && b.Len() <= patternLimit; {
		c := text[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			if j := strings.IndexByte(text[i+1:], c); j >= 0 {
				write(string([]byte{c, '?', c}))
				i += j + 2
			} else {
				write(text[i : i+1])
				i++
			}
		case isAlnum(c):
			j := i + 1
			for j < len(text) && isAlnum(text[j]) {
				j++
			}
			if n := uuidAt(text[i:]); n > 0 {
				write("#")
				i += n
				continue
			}
			if w := text[i:j]; hexWord(w) {
				write("#")
			} else {
				write(numbersMasked(w))
			}
			i = j
		default:
			r, size := utf8.DecodeRuneInString(text[i:])
			if r != utf8.RuneError && unicode.IsSpace(r) {
				space = true
			} else {
				write(text[i : i+size])
			}
			i += size
		}
	}
	out := b.String()
	if len(out) > patternLimit {
		cut := patternLimit
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = strings.TrimRight(out[:cut], " ")
	}
	return out
}

// ErrorFingerprint returns the fingerprint of an error text: 12 lowercase
// hex digits of the SHA-256 of its ErrorPattern, a short id that is the
// same for every error of one pattern and stays the same across processes
// and releases of keel that keep ErrorPattern's rules.
func ErrorFingerprint(text string) string { return fingerprintOf(ErrorPattern(text)) }

// fingerprintOf returns the fingerprint of a pattern.
func fingerprintOf(pattern string) string {
	sum := sha256.Sum256([]byte(pattern))
	return hex.EncodeToString(sum[:fingerprintLen/2])
}

// fingerprintLen is the length of ErrorFingerprint's result.
const fingerprintLen = 12

// validFingerprint reports whether s has the form of ErrorFingerprint's
// result.
func validFingerprint(s string) bool {
	if len(s) != fingerprintLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) && (s[i] < 'a' || s[i] > 'f') {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
func isAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// hexWord reports whether a word (a run of ASCII letters and digits) is a
// hex number written with 0x, or a hex string of 8 or more characters
// with a digit. The digit keeps words such as "deadbeef" or "accepted" as
// they are, and makes patterns their own patterns: a pattern has no digits
// outside quotes.
func hexWord(w string) bool {
	if len(w) > 2 && w[0] == '0' && (w[1] == 'x' || w[1] == 'X') {
		return allHex(w[2:])
	}
	return len(w) >= 8 && allHex(w) && strings.ContainsAny(w, "0123456789")
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// uuidAt returns the length of the UUID (8-4-4-4-12 hex digits, with at
// least one decimal digit, for the reason hexWord gives) that s starts
// with, or 0. The UUID must end the word: a letter or digit right after it
// makes it something else.
func uuidAt(s string) int {
	const n = 36
	if len(s) < n || (len(s) > n && isAlnum(s[n])) {
		return 0
	}
	digit := false
	for i := 0; i < n; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return 0
			}
		default:
			if !isHex(c) {
				return 0
			}
			digit = digit || isDigit(c)
		}
	}
	if !digit {
		return 0
	}
	return n
}

// numbersMasked returns w with each run of digits replaced by "#".
func numbersMasked(w string) string {
	if !strings.ContainsAny(w, "0123456789") {
		return w
	}
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		if !isDigit(w[i]) {
			b.WriteByte(w[i])
			continue
		}
		b.WriteByte('#')
		for i+1 < len(w) && isDigit(w[i+1]) {
			i++
		}
	}
	return b.String()
}
