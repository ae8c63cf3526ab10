package outbox_test

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keel-go/keel/outbox"
)

// TestErrorPattern checks what ErrorPattern replaces and what it keeps.
func TestErrorPattern(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"order 17: timeout after 3s", "order #: timeout after #s"},
		{"order 912: timeout after 5s", "order #: timeout after #s"},
		{"dial tcp 10.0.0.12:5432: connection refused", "dial tcp #.#.#.#:#: connection refused"},
		{"message 550e8400-e29b-41d4-a716-446655440000 rejected", "message # rejected"},
		{"message 550E8400-E29B-41D4-A716-446655440000 rejected", "message # rejected"},
		{"commit 3f2a9c1d8e7b rejected", "commit # rejected"},
		{"pointer 0x7ffd5e8c and 0XFF", "pointer # and #"},
		// Hex letters without a digit are words, not ids.
		{"deadbeef accepted decade", "deadbeef accepted decade"},
		{"deadbeef-cafe-babe-face-decafbadfeed", "deadbeef-cafe-babe-face-decafbadfeed"},
		// Short hex runs with a digit are numbers inside a word.
		{"utf8 and http2 and e29b", "utf# and http# and e#b"},
		{`key 'acc-17' not found`, `key '?' not found`},
		{`field "name" is "too long"`, `field "?" is "?"`},
		{"table `shop_orders` is locked", "table `?` is locked"},
		{`it's "x" and 'y`, `it'?'y`},
		{`unclosed "quote 12`, `unclosed "quote #`},
		{"  spaced\t\tout\n\nerror  ", "spaced out error"},
		{"non\u00a0breaking", "non breaking"},
		{"", ""},
		{"# 12", "# #"},
		{"état 42 invalide: «clé»", "état # invalide: «clé»"},
	} {
		if got := outbox.ErrorPattern(tc.in); got != tc.want {
			t.Errorf("ErrorPattern(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if a, b := outbox.ErrorFingerprint("order 17: timeout after 3s"), outbox.ErrorFingerprint("order 912: timeout after 5s"); a != b {
		t.Errorf("fingerprints of one pattern differ: %s, %s", a, b)
	}
	if a, b := outbox.ErrorFingerprint("order 17: timeout"), outbox.ErrorFingerprint("order 17: refused"); a == b {
		t.Errorf("fingerprints of two patterns are both %s", a)
	}
	// The first 12 hex digits of the SHA-256 of the pattern "e #", fixed
	// for good: fingerprints are stored and passed around.
	if got := outbox.ErrorFingerprint("e 1"); got != "6b0c3d72662c" {
		t.Errorf(`ErrorFingerprint("e 1") = %s`, got)
	}
}

// TestErrorPatternCapped checks the cap on long texts: at most 200 bytes,
// cut on a rune boundary, with no trailing space.
func TestErrorPatternCapped(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("é", 500),
		strings.Repeat("ab ", 500),
		strings.Repeat("x", 199) + "€€€",
		strings.Repeat("word ", 39) + "abcd efgh",
	} {
		got := outbox.ErrorPattern(in)
		if len(got) > 200 || len(got) < 190 || !utf8.ValidString(got) || strings.HasSuffix(got, " ") {
			t.Errorf("ErrorPattern of %d bytes = %q (%d bytes); want 190-200 bytes of valid UTF-8, no trailing space", len(in), got, len(got))
		}
		if again := outbox.ErrorPattern(got); again != got {
			t.Errorf("ErrorPattern of the capped pattern %q = %q", got, again)
		}
	}
}

var fingerprintForm = regexp.MustCompile(`^[0-9a-f]{12}$`)

// FuzzErrorPattern checks that ErrorPattern never panics, keeps valid
// UTF-8 valid, stays within its cap and is its own pattern, and that every
// fingerprint has the form RequeueError accepts.
func FuzzErrorPattern(f *testing.F) {
	for _, s := range []string{
		"order 17: timeout after 3s",
		`key 'acc-17' not found in "shop" (tried 3x)`,
		"550e8400-e29b-41d4-a716-446655440000",
		"0x1f 0x deadbeef01 `a` '",
		"it's \"unclosed 'mixed` 12",
		"\t\n\u00a0\u2028 x  \u3000y",
		strings.Repeat("€1 ", 80),
		"\xff\xfe invalid 12",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := outbox.ErrorPattern(s)
		if len(p) > 200 {
			t.Fatalf("pattern of %q is %d bytes", s, len(p))
		}
		if utf8.ValidString(s) && !utf8.ValidString(p) {
			t.Fatalf("pattern of valid %q is not valid UTF-8: %q", s, p)
		}
		if again := outbox.ErrorPattern(p); again != p {
			t.Fatalf("ErrorPattern(%q) = %q, but ErrorPattern of that = %q", s, p, again)
		}
		if fp := outbox.ErrorFingerprint(s); !fingerprintForm.MatchString(fp) || fp != outbox.ErrorFingerprint(p) {
			t.Fatalf("ErrorFingerprint(%q) = %q; ErrorFingerprint of its pattern = %q", s, fp, outbox.ErrorFingerprint(p))
		}
	})
}
