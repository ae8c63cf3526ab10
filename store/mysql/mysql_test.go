package mysql_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store"
)

// TestClassify provokes each kind of error keel handles and checks the
// dialect names it without importing the driver.
func TestClassify(t *testing.T) {
	db := testdb.Open(t, testdb.MariaDB)
	d, sqldb := db.Dialect(), db.SQL()
	exec := func(q string) error {
		_, err := sqldb.Exec(q)
		return err
	}
	for _, q := range []string{
		"CREATE TABLE parents (id VARCHAR(64) PRIMARY KEY) ENGINE = InnoDB",
		"CREATE TABLE kids (id VARCHAR(64) PRIMARY KEY, parent VARCHAR(64), ssn VARCHAR(64), CONSTRAINT kids_ssn_key UNIQUE (ssn), CONSTRAINT kids_parent_fk FOREIGN KEY (parent) REFERENCES parents (id)) ENGINE = InnoDB",
		"INSERT INTO parents VALUES ('p1')",
		"INSERT INTO kids VALUES ('k1', 'p1', '123')",
	} {
		if err := exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		err        error
		want       dialect.Class
		constraint string
	}{
		{"unique", exec("INSERT INTO kids VALUES ('k2', 'p1', '123')"), dialect.Unique, "kids_ssn_key"},
		{"primary key", exec("INSERT INTO kids VALUES ('k1', 'p1', '999')"), dialect.KeyConflict, "PRIMARY"},
		{"foreign key", exec("INSERT INTO kids VALUES ('k3', 'nobody', '456')"), dialect.ForeignKey, "kids_parent_fk"},
		{"referenced", exec("DELETE FROM parents WHERE id = 'p1'"), dialect.ForeignKey, "kids_parent_fk"},
		{"missing table", exec("INSERT INTO nowhere VALUES (1)"), dialect.MissingTable, ""},
		{"other", errors.New("boom"), dialect.Other, ""},
	} {
		if got := d.Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
		if got := d.ConstraintName(tc.err); got != tc.constraint {
			t.Errorf("%s: ConstraintName(%v) = %q, want %q", tc.name, tc.err, got, tc.constraint)
		}
	}
}

// TestListParameters round-trips the JSON list encodings through the
// server, keys compared byte for byte.
func TestListParameters(t *testing.T) {
	db := testdb.Open(t, testdb.MariaDB)
	d := db.Dialect()
	texts := []string{"", "plain", `quote " here`, `back\slash`, "ünïcødé ✓", "Key-1", "key-1"}
	rows, err := db.SQL().Query("SELECT v FROM JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS l", d.Strings(texts))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	rows.Close()
	if diff := cmp.Diff(texts, got); diff != "" {
		t.Errorf("text list round trip (-want +got):\n%s", diff)
	}
	var n int
	if err := db.SQL().QueryRow("SELECT COUNT(*) FROM JSON_TABLE(?, '$[*]' COLUMNS (v VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS l WHERE v = 'key-1'", d.Strings(texts)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("'key-1' matched %d entries; keys must compare byte for byte", n)
	}
}

// TestSessionChecks opens sessions that would break a guarantee and expects
// the store to refuse them, naming the setting.
func TestSessionChecks(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.MariaDB)
	for _, tc := range []struct {
		name, param, says string
	}{
		{"read uncommitted", "tx_isolation=%27READ-UNCOMMITTED%27", "READ-UNCOMMITTED"},
		{"not strict", "sql_mode=%27NO_ENGINE_SUBSTITUTION%27", "strict SQL mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := testdb.Reopen(t, testdb.MariaDB, db.DSN+"&"+tc.param)
			for op, err := range map[string]error{"CheckSchema": bad.CheckSchema(ctx), "Migrate": bad.Migrate(ctx)} {
				if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("%s = %v; want ErrInvalidConfig naming %q", op, err, tc.says)
				}
			}
		})
	}
	if err := db.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema with the recommended options: %v", err)
	}
}
