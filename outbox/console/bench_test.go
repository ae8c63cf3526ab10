package console_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox/console"
)

// BenchmarkOverview serves the console's pages from a store holding
// 1,000,000 delivered rows kept for retention and 10,000 parked ones, over
// HTTP as a browser gets them:
//
//   - overview: the overview page (counts, oldest pending, relays, the 64
//     leases, the chart);
//   - parked-keys: the first page of parked keys;
//   - parked-errors: the parked messages grouped by error, which reads
//     every parked row;
//   - baseline: the overview's numbers read by hand with database/sql (the
//     same counts, the leases and the relays) and written as an HTML table.
//
// Run with -benchtime 20x; each reports ms/op.
func BenchmarkOverview(b *testing.B) {
	for _, setup := range testdb.Setups {
		b.Run(setup.Name, func(b *testing.B) {
			db := testdb.Open(b, setup)
			testdb.FillOutbox(b, db, 1_000_000, 1)
			testdb.FillOutbox(b, db, 10_000, 2)
			con, err := console.New(db.Store, console.Options{Logger: testdb.Logger()})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(con)
			defer srv.Close()
			page := func(b *testing.B, path string) {
				for b.Loop() {
					res, err := http.Get(srv.URL + path)
					if err != nil {
						b.Fatal(err)
					}
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK || len(body) == 0 {
						b.Fatalf("GET %s: %d", path, res.StatusCode)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
			}
			b.Run("overview", func(b *testing.B) { page(b, "/") })
			b.Run("parked-keys", func(b *testing.B) { page(b, "/parked") })
			b.Run("parked-errors", func(b *testing.B) { page(b, "/parked?view=errors") })
			b.Run("baseline", func(b *testing.B) {
				mux := http.NewServeMux()
				mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
					if err := handOverview(r.Context(), w, db); err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
					}
				})
				hs := httptest.NewServer(mux)
				defer hs.Close()
				for b.Loop() {
					res, err := http.Get(hs.URL + "/")
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						b.Fatalf("baseline: %d", res.StatusCode)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
			})
		})
	}
}

// handOverview reads what the overview shows with plain database/sql and
// writes it as a bare HTML table: the reference for the console's page.
func handOverview(ctx context.Context, w io.Writer, db testdb.DB) error {
	q := func(s string) string { return db.Dialect().Rebind(s) }
	var (
		pending, retrying, parked, scheduled int64
		oldest                               sql.Null[any]
	)
	conn := db.SQL()
	if err := conn.QueryRowContext(ctx, q(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0), MIN(created_at) FROM `+db.Table("outbox")+` WHERE state = 0`)).Scan(&pending, &retrying, &oldest); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+db.Table("outbox")+` WHERE state = 2`).Scan(&parked); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+db.Table("scheduled")).Scan(&scheduled); err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<table><tr><td>pending</td><td>%d</td></tr><tr><td>retrying</td><td>%d</td></tr><tr><td>parked</td><td>%d</td></tr><tr><td>scheduled</td><td>%d</td></tr></table>\n",
		pending, retrying, parked, scheduled)
	rows, err := conn.QueryContext(ctx, q(`SELECT id, expires_at, delivered FROM `+db.Table("outbox_relays")+` WHERE expires_at > ? ORDER BY id`), db.Dialect().Time(time.Now()))
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			id        string
			exp       any
			delivered int64
		)
		if err := rows.Scan(&id, &exp, &delivered); err != nil {
			rows.Close()
			return err
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%v</td><td>%d</td></tr>\n", html.EscapeString(id), exp, delivered)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	rows, err = conn.QueryContext(ctx, `SELECT partition_no, owner, expires_at FROM `+db.Table("outbox_leases")+` ORDER BY partition_no`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			p     int
			owner string
			exp   any
		)
		if err := rows.Scan(&p, &owner, &exp); err != nil {
			rows.Close()
			return err
		}
		fmt.Fprintf(&b, "<span title=\"%s\">%d</span>", html.EscapeString(owner), p)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	_, err = w.Write(b.Bytes())
	return err
}
