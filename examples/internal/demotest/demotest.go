// Package demotest runs an example's run function in a test, on every
// database the demo package opens: SQLite through the driver of this build
// (mattn/go-sqlite3 with cgo, modernc.org/sqlite without) and PostgreSQL
// through pgx, which needs KEEL_TEST_POSTGRES and skips without it.
package demotest

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/examples/internal/demo"
	"github.com/keel-go/keel/internal/testdb"
)

// Setups returns the testdb setups that match how demo opens databases.
func Setups() []testdb.Setup {
	lite := testdb.SQLiteMattn
	if demo.SQLiteDriver == testdb.SQLiteModernc.Driver {
		lite = testdb.SQLiteModernc
	}
	return []testdb.Setup{lite, testdb.PostgresPgx}
}

// Run calls run as a parallel subtest per setup, on a fresh database, and
// hands its output to check. A run that fails fails the subtest with the
// output printed so far.
func Run(t *testing.T, run func(ctx context.Context, w io.Writer, dsn string) error, check func(t *testing.T, s testdb.Setup, out string)) {
	t.Helper()
	for _, s := range Setups() {
		t.Run(s.Name, func(t *testing.T) {
			testdb.Require(t, s)
			t.Parallel()
			var out strings.Builder
			if err := run(t.Context(), &out, testdb.DSN(t, s)); err != nil {
				t.Fatalf("run: %v\noutput so far:\n%s", err, out.String())
			}
			check(t, s, out.String())
		})
	}
}

// Output is Run for an example whose output is the same on every setup:
// it must equal want, less want's leading newline.
func Output(t *testing.T, run func(ctx context.Context, w io.Writer, dsn string) error, want string) {
	t.Helper()
	Run(t, run, func(t *testing.T, _ testdb.Setup, got string) {
		if diff := cmp.Diff(strings.TrimPrefix(want, "\n"), got); diff != "" {
			t.Errorf("output differs (-want +got):\n%s", diff)
		}
	})
}
