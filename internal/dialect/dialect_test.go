package dialect

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestRebindDollar(t *testing.T) {
	q := "SELECT '?' FROM t WHERE a = ? AND b IN (?, ?)"
	if got, want := RebindDollar(q), "SELECT '?' FROM t WHERE a = $1 AND b IN ($2, $3)"; got != want {
		t.Errorf("RebindDollar = %q, want %q", got, want)
	}
}

func TestIdentifiers(t *testing.T) {
	for _, ok := range []string{"orders", "_x1", "Vehicle_Drivers"} {
		if err := ValidateIdent("Table", ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1x", "a-b", "a b", "x;DROP TABLE y", `a"b`, "a.b", strings.Repeat("x", 64)} {
		if err := ValidateIdent("Table", bad); !errors.Is(err, ErrBadIdentifier) || !strings.Contains(err.Error(), "Table") {
			t.Errorf("%q: %v, want ErrBadIdentifier naming the setting", bad, err)
		}
	}
	if err := ValidateQualifiedIdent("Table", "app.orders"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"a.b.c", ".a", "a.", "a.b;--"} {
		if err := ValidateQualifiedIdent("Table", bad); !errors.Is(err, ErrBadIdentifier) {
			t.Errorf("%q accepted", bad)
		}
	}
	if p, err := Prefix(""); err != nil || p != DefaultPrefix {
		t.Errorf("Prefix(\"\") = %q, %v", p, err)
	}
	for _, bad := range []string{"1_", "a-", "a;", strings.Repeat("p", 41)} {
		if _, err := Prefix(bad); !errors.Is(err, ErrBadIdentifier) {
			t.Errorf("Prefix(%q) accepted", bad)
		}
	}
}

// plain is the shape every accepted name must have: nothing that could
// end an identifier and start SQL.
var plain = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

func FuzzIdentifiers(f *testing.F) {
	for _, s := range []string{"orders", "app.orders", "x; DROP TABLE y", "a\x00b", "ä", `a"."b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateIdent("n", name) == nil && (!plain.MatchString(name) || strings.Contains(name, ".") || len(name) > 63) {
			t.Fatalf("ValidateIdent accepted %q", name)
		}
		if ValidateQualifiedIdent("n", name) == nil && !plain.MatchString(name) {
			t.Fatalf("ValidateQualifiedIdent accepted %q", name)
		}
		if p, err := Prefix(name); err == nil && !plain.MatchString(p+"x") {
			t.Fatalf("Prefix accepted %q", name)
		}
	})
}

func TestQuoteCutsLongValues(t *testing.T) {
	if got := Quote("acc-1"); got != `"acc-1"` {
		t.Errorf("Quote short = %s", got)
	}
	long := strings.Repeat("é", 5000) // 10,000 bytes, 2-byte runes
	got := Quote(long)
	if len(got) > 100 || !strings.Contains(got, "(10000 bytes)") || !utf8.ValidString(got) {
		t.Errorf("Quote of 10,000 bytes = %q (%d bytes); want a short, valid quote noting the length", got, len(got))
	}
}

func TestCheckText(t *testing.T) {
	if err := CheckText("key", strings.Repeat("k", 512), MaxKeyBytes); err != nil {
		t.Errorf("512-byte key: %v", err)
	}
	if err := CheckText("key", strings.Repeat("k", 513), MaxKeyBytes); err == nil || !strings.Contains(err.Error(), "limit is 512") {
		t.Errorf("513-byte key: %v", err)
	}
	if err := CheckText("header", "a\xffb", 0); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8: %v", err)
	}
	if err := CheckText("name", "a\x00b", 0); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("NUL byte: %v", err)
	}
}

func TestMigrationFiles(t *testing.T) {
	fsys := fstest.MapFS{
		"0002_b.sql": {Data: []byte("-- second\nCREATE INDEX {{p}}x ON {{p}}t (a);\n")},
		"0001_a.sql": {Data: []byte("CREATE TABLE {{p}}t (\n  -- a comment line is dropped;\n  a TEXT\n);\n\nINSERT INTO {{p}}t VALUES ('x');\n")},
		"README":     {Data: []byte("ignored")},
	}
	ms, err := ReadMigrations(fsys, "app_")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 1 || ms[1].Name != "0002_b" || strings.Contains(ms[0].SQL, "{{p}}") {
		t.Fatalf("ReadMigrations = %+v", ms)
	}
	want := []string{"CREATE TABLE app_t (\n  a TEXT\n);", "INSERT INTO app_t VALUES ('x');"}
	if diff := cmp.Diff(want, SplitStatements(ms[0].SQL)); diff != "" {
		t.Errorf("SplitStatements (-want +got):\n%s", diff)
	}
	fsys["0002_dup.sql"] = &fstest.MapFile{Data: []byte("SELECT 1;")}
	if _, err := ReadMigrations(fsys, "p_"); err == nil {
		t.Error("two migrations with version 2 accepted")
	}
}

func TestIsClosed(t *testing.T) {
	closed := errors.New("sql: database is closed")
	if !IsClosed(fmt.Errorf("relay claim: %w", closed)) || !IsClosed(errors.Join(errors.New("x"), closed)) {
		t.Error("wrapped closed-database error not recognised")
	}
	if IsClosed(errors.New("connection refused")) || IsClosed(nil) {
		t.Error("other errors taken for a closed database")
	}
}
