package dialect

import (
	"database/sql"
	"errors"
	"regexp"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

func TestRebind(t *testing.T) {
	pg, _ := ByName("postgres")
	lite, _ := ByName("sqlite3")
	q := "SELECT '?' FROM t WHERE a = ? AND b IN (?, ?)"
	if got, want := pg.Rebind(q), "SELECT '?' FROM t WHERE a = $1 AND b IN ($2, $3)"; got != want {
		t.Errorf("postgres Rebind = %q, want %q", got, want)
	}
	if got := lite.Rebind(q); got != q {
		t.Errorf("sqlite Rebind changed the query: %q", got)
	}
}

func TestByNameAndDetect(t *testing.T) {
	if _, err := ByName("oracle"); !errors.Is(err, ErrUnknownDialect) || !strings.Contains(err.Error(), "postgres") {
		t.Errorf("ByName(oracle) = %v", err)
	}
	db, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d, err := Resolve(db, "")
	if err != nil || d.Name != SQLite {
		t.Errorf("Detect(sqlite3) = %v, %v", d, err)
	}
	if d, err := Resolve(db, "postgres"); err != nil || d.Name != Postgres {
		t.Errorf("override = %v, %v", d, err)
	}
	if _, err := Resolve(nil, ""); err == nil {
		t.Error("nil db accepted")
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
	if _, err := Prefix("tenant_1_"); err != nil {
		t.Error(err)
	}
	if _, err := Prefix("x'; --"); !errors.Is(err, ErrBadIdentifier) {
		t.Error("injection prefix accepted")
	}
}

// FuzzValidateIdent checks that nothing the validator accepts can break out
// of an unquoted identifier position.
func FuzzValidateIdent(f *testing.F) {
	for _, s := range []string{"orders", "a;b", "x y", "名前", "a\x00b", "app.t"} {
		f.Add(s)
	}
	safe := regexp.MustCompile(`^[A-Za-z0-9_.]+$`)
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateIdent("T", s) == nil && !safe.MatchString(s) {
			t.Fatalf("accepted unsafe identifier %q", s)
		}
		if ValidateQualifiedIdent("T", s) == nil && (!safe.MatchString(s) || strings.Count(s, ".") > 1) {
			t.Fatalf("accepted unsafe qualified identifier %q", s)
		}
	})
}

func TestMigrationsSplit(t *testing.T) {
	for _, name := range []string{SQLite, Postgres} {
		d, _ := ByName(name)
		ms, err := d.Migrations("app_")
		if err != nil || len(ms) == 0 {
			t.Fatalf("%s migrations: %d, %v", name, len(ms), err)
		}
		for i, m := range ms {
			if m.Version != i+1 {
				t.Errorf("%s migration %s has version %d, want %d", name, m.Name, m.Version, i+1)
			}
			if strings.Contains(m.SQL, "{{p}}") || !strings.Contains(m.SQL, "app_") {
				t.Errorf("%s: prefix not substituted in %s", name, m.Name)
			}
			for _, stmt := range splitStatements(m.SQL) {
				if !strings.HasSuffix(stmt, ";") || strings.Count(stmt, ";") != 1 {
					t.Errorf("%s: bad statement split in %s: %q", name, m.Name, stmt)
				}
			}
		}
		if d.LatestVersion() != len(ms) {
			t.Errorf("LatestVersion = %d, want %d", d.LatestVersion(), len(ms))
		}
	}
}
