package store_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDriversAreLinkedOnlyByChoice lists what keel's packages link and
// checks that none drags in a database driver the program did not choose:
// a PostgreSQL service on pgx links neither SQLite driver nor lib/pq, and
// nothing needs cgo.
func TestDriversAreLinkedOnlyByChoice(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	const (
		mattn   = "github.com/mattn/go-sqlite3"
		modernc = "modernc.org/sqlite"
		pq      = "github.com/lib/pq"
		pgx     = "github.com/jackc/pgx/v5"
		gomysql = "github.com/go-sql-driver/mysql"
	)
	for _, tc := range []struct {
		pkgs      []string
		forbidden []string
	}{
		{[]string{"aggregate", "repository", "uow", "outbox", "dispatch", "dispatch/kafka", "store", "store/sqlite", "store/postgres", "store/mysql"}, []string{mattn, modernc, pq, pgx, gomysql}},
		{[]string{"store/postgres/pgxlisten"}, []string{mattn, modernc, pq}},
		{[]string{"store/postgres/pqlisten"}, []string{mattn, modernc, pgx}},
	} {
		args := []string{"list", "-deps", "-f", "{{.ImportPath}}"}
		for _, p := range tc.pkgs {
			args = append(args, "github.com/keel-go/keel/"+p)
		}
		cmd := exec.Command("go", args...)
		cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range tc.forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%v link %s", tc.pkgs, dep)
				}
			}
			if dep == "runtime/cgo" {
				t.Errorf("%v need cgo", tc.pkgs)
			}
		}
	}
}
