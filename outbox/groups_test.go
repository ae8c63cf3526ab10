package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// execSQL runs a statement written with "?" placeholders.
func execSQL(t testing.TB, db testdb.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.SQL().Exec(db.Dialect().Rebind(query), args...); err != nil {
		t.Fatal(err)
	}
}

// seqOf reads the outbox position of a message.
func seqOf(t testing.TB, ob *outbox.Outbox, id string) int64 {
	t.Helper()
	r, err := ob.Lookup(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r.Seq
}

// TestParkedKeys lists the keys with parked messages, oldest first, page
// by page, leaving out pending, retrying and delivered rows.
func TestParkedKeys(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msg := func(id, name, key string) outbox.Message {
			return outbox.Message{ID: id, Name: name, Key: key, Payload: []byte(id)}
		}
		if err := ob.Enqueue(ctx, msg("e1", "placed", "e"), msg("a1", "placed", "a"), msg("b1", "paid", "b"),
			msg("a2", "paid", "a"), msg("c1", "placed", "c"), msg("d1", "placed", "d"), msg("d2", "shipped", "d"),
			msg("f1", "placed", "f"), msg("a3", "shipped", "a")); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		at := func(minutes int) time.Time { return now.Add(time.Duration(-minutes) * time.Minute) }
		parkWith(t, db, at(9), "order 1: timeout", "a1")
		parkWith(t, db, at(8), "boom", "a2", "a3", "b1")
		parkWith(t, db, at(7), "key 'd' refused", "d2")
		// Left out: e1 delivered and kept, f1 retrying, c1 and d1 pending.
		d := db.Dialect()
		execSQL(t, db, "UPDATE keel_outbox SET state = 1, delivered_at = ? WHERE id = 'e1'", d.Time(time.Now()))
		execSQL(t, db, "UPDATE keel_outbox SET attempts = 1, last_error = 'x', next_attempt_at = ? WHERE id = 'f1'", d.Time(time.Now()))

		keys := func(q outbox.ParkedKeysQuery) []outbox.ParkedKey {
			t.Helper()
			ks, err := ob.ParkedKeys(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			return ks
		}
		want := []outbox.ParkedKey{
			{Key: "a", Count: 3, FirstSeq: seqOf(t, ob, "a1"), FirstID: "a1", FirstName: "placed", LastError: "order 1: timeout", ParkedAt: at(9)},
			{Key: "b", Count: 1, FirstSeq: seqOf(t, ob, "b1"), FirstID: "b1", FirstName: "paid", LastError: "boom", ParkedAt: at(8)},
			{Key: "d", Count: 1, FirstSeq: seqOf(t, ob, "d2"), FirstID: "d2", FirstName: "shipped", LastError: "key 'd' refused", ParkedAt: at(7)},
		}
		if diff := cmp.Diff(want, keys(outbox.ParkedKeysQuery{})); diff != "" {
			t.Errorf("ParkedKeys (-want +got):\n%s", diff)
		}
		page1 := keys(outbox.ParkedKeysQuery{Limit: 2})
		if diff := cmp.Diff(want[:2], page1); diff != "" {
			t.Errorf("first page (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want[2:], keys(outbox.ParkedKeysQuery{AfterSeq: page1[1].FirstSeq, Limit: 2})); diff != "" {
			t.Errorf("second page (-want +got):\n%s", diff)
		}
		if ks := keys(outbox.ParkedKeysQuery{AfterSeq: want[2].FirstSeq}); len(ks) != 0 {
			t.Errorf("page after the last key = %+v", ks)
		}
		// A key whose oldest parked row is before AfterSeq is not listed
		// again, even with later parked rows.
		if diff := cmp.Diff(want[1:], keys(outbox.ParkedKeysQuery{AfterSeq: want[0].FirstSeq})); diff != "" {
			t.Errorf("page after a (-want +got):\n%s", diff)
		}
		if _, err := ob.ParkedKeys(ctx, outbox.ParkedKeysQuery{Limit: -1}); !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "Limit") {
			t.Errorf("ParkedKeys with Limit -1 = %v; want ErrInvalidConfig naming Limit", err)
		}
	})
}

// TestParkedErrors groups parked messages by the fingerprint of their last
// errors, lists a group's messages with Parked, alone and with the other
// filters, and requeues a group, over more rows than one page reads.
func TestParkedErrors(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msg := func(id, name, key string) outbox.Message {
			return outbox.Message{ID: id, Name: name, Key: key, Payload: []byte(id)}
		}
		msgs := []outbox.Message{
			msg("m1", "placed", "k1"), msg("m2", "placed", "k1"), msg("m3", "paid", "k2"),
			msg("m4", "lookup", "k3"), msg("m5", "lookup", "k3"), msg("m6", "placed", "k4"), msg("m7", "placed", "k5"),
			msg("m8", "placed", "k6"), // pending
		}
		const bulk = 1500 // more than a page of 1000
		for i := range bulk {
			msgs = append(msgs, msg(fmt.Sprintf("bulk-%04d", i), "bulk", fmt.Sprintf("bk-%d", i%10)))
		}
		if err := ob.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		parkWith(t, db, now, "order 17: timeout after 3s", "m1")
		parkWith(t, db, now, "order 912: timeout after 5s", "m2")
		parkWith(t, db, now, "order 5: timeout after 1s", "m3")
		parkWith(t, db, now, "key 'x' not found", "m4")
		parkWith(t, db, now, "key 'y' not found", "m5")
		parkWith(t, db, now, "boom", "m6")
		parkWith(t, db, now, "refused", "m7")
		execSQL(t, db, "UPDATE keel_outbox SET state = 2, attempts = 1, last_error = 'bulk 9 failed', next_attempt_at = ? WHERE name = 'bulk'", db.Dialect().Time(now))

		fp := outbox.ErrorFingerprint
		groups := func() []outbox.ParkedError {
			t.Helper()
			gs, err := ob.ParkedErrors(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return gs
		}
		want := []outbox.ParkedError{
			{Fingerprint: fp("bulk 1 failed"), Pattern: "bulk # failed", Sample: "bulk 9 failed", Count: bulk, Keys: 10, FirstSeq: seqOf(t, ob, "bulk-0000")},
			{Fingerprint: fp("order 1: timeout after 1s"), Pattern: "order #: timeout after #s", Sample: "order 17: timeout after 3s", Count: 3, Keys: 2, FirstSeq: seqOf(t, ob, "m1")},
			{Fingerprint: fp("key 'z' not found"), Pattern: "key '?' not found", Sample: "key 'x' not found", Count: 2, Keys: 1, FirstSeq: seqOf(t, ob, "m4")},
			{Fingerprint: fp("boom"), Pattern: "boom", Sample: "boom", Count: 1, Keys: 1, FirstSeq: seqOf(t, ob, "m6")},
			{Fingerprint: fp("refused"), Pattern: "refused", Sample: "refused", Count: 1, Keys: 1, FirstSeq: seqOf(t, ob, "m7")},
		}
		if diff := cmp.Diff(want, groups()); diff != "" {
			t.Fatalf("ParkedErrors (-want +got):\n%s", diff)
		}

		// Parked, by error and by the other filters, page by page.
		ids := func(q outbox.ParkedQuery) []string {
			t.Helper()
			ps, err := ob.Parked(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, p := range ps {
				out = append(out, p.ID)
			}
			return out
		}
		timeout := want[1].Fingerprint
		for _, tc := range []struct {
			name string
			q    outbox.ParkedQuery
			want []string
		}{
			{"error", outbox.ParkedQuery{Error: timeout}, []string{"m1", "m2", "m3"}},
			{"error, first page", outbox.ParkedQuery{Error: timeout, Limit: 2}, []string{"m1", "m2"}},
			{"error, next page", outbox.ParkedQuery{Error: timeout, Limit: 2, AfterSeq: seqOf(t, ob, "m2")}, []string{"m3"}},
			{"error and key", outbox.ParkedQuery{Error: timeout, Key: "k2"}, []string{"m3"}},
			{"error and name", outbox.ParkedQuery{Error: timeout, Name: "placed"}, []string{"m1", "m2"}},
			{"error of no row", outbox.ParkedQuery{Error: fp("nothing like it")}, []string{}},
			{"name", outbox.ParkedQuery{Name: "lookup"}, []string{"m4", "m5"}},
			{"name, next page", outbox.ParkedQuery{Name: "lookup", Limit: 1, AfterSeq: seqOf(t, ob, "m4")}, []string{"m5"}},
			{"key and name", outbox.ParkedQuery{Key: "k1", Name: "placed", Limit: 1}, []string{"m1"}},
			{"key and name, next page", outbox.ParkedQuery{Key: "k1", Name: "placed", AfterSeq: seqOf(t, ob, "m1")}, []string{"m2"}},
			{"key and other name", outbox.ParkedQuery{Key: "k1", Name: "paid"}, []string{}},
		} {
			if diff := cmp.Diff(tc.want, ids(tc.q)); diff != "" {
				t.Errorf("Parked by %s (-want +got):\n%s", tc.name, diff)
			}
		}
		// A group spread over more than a page, read in pages of the
		// caller's own.
		bulkFP := want[0].Fingerprint
		page1 := ids(outbox.ParkedQuery{Error: bulkFP, Limit: 1200})
		if len(page1) != 1200 || page1[0] != "bulk-0000" || page1[1199] != "bulk-1199" {
			t.Fatalf("first page of the bulk group: %d rows, %s to %s", len(page1), page1[0], page1[len(page1)-1])
		}
		page2 := ids(outbox.ParkedQuery{Error: bulkFP, Limit: 1200, AfterSeq: seqOf(t, ob, "bulk-1199")})
		if len(page2) != bulk-1200 || page2[0] != "bulk-1200" {
			t.Fatalf("second page of the bulk group: %d rows from %v", len(page2), page2[:min(1, len(page2))])
		}

		// RequeueError requeues the group, over pages, and nothing else.
		if n, err := ob.RequeueError(ctx, bulkFP); err != nil || n != bulk {
			t.Fatalf("RequeueError(bulk) = %d, %v; want %d", n, err, bulk)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE name = 'bulk' AND state = 0 AND attempts = 0 AND next_attempt_at IS NULL"); n != bulk {
			t.Errorf("%d bulk rows pending with fresh attempts, want %d", n, bulk)
		}
		if diff := cmp.Diff(want[1:], groups()); diff != "" {
			t.Errorf("ParkedErrors after RequeueError (-want +got):\n%s", diff)
		}
		if n, err := ob.RequeueError(ctx, bulkFP); err != nil || n != 0 {
			t.Errorf("second RequeueError(bulk) = %d, %v; want 0", n, err)
		}

		for _, bad := range []string{"", "abc", "ABCDEF012345", "abcdef01234g", "abcdef0123456"} {
			if _, err := ob.RequeueError(ctx, bad); !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "ParkedErrors") {
				t.Errorf("RequeueError(%q) = %v; want ErrInvalidConfig saying where fingerprints come from", bad, err)
			}
		}
		if _, err := ob.Parked(ctx, outbox.ParkedQuery{Error: "timeout"}); !errors.Is(err, store.ErrInvalidConfig) {
			t.Errorf("Parked with Error %q = %v; want ErrInvalidConfig", "timeout", err)
		}
	})
}

// TestRequeueErrorKeepsKeyOrder requeues the error group of a key's later
// parked message while an earlier one, of another error, stays parked: the
// relay delivers nothing of the key until the earlier one is requeued too,
// then the key's messages in order.
func TestRequeueErrorKeepsKeyOrder(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		msg := func(id, key string) outbox.Message {
			return outbox.Message{ID: id, Name: "e", Key: key, Payload: []byte(id)}
		}
		if err := ob.Enqueue(ctx, msg("k1", "k"), msg("k2", "k"), msg("k3", "k"), msg("l1", "l")); err != nil {
			t.Fatal(err)
		}
		parkWith(t, db, time.Now(), "disk full", "k1")
		parkWith(t, db, time.Now(), "order 3 rejected", "k2")

		rec := &recorder{}
		r := newRelay(t, db.Store, rec, outbox.RelayConfig{})
		delivered := func() []string {
			t.Helper()
			if _, err := r.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, m := range rec.messages() {
				out = append(out, m.ID)
			}
			return out
		}
		if n, err := ob.RequeueError(ctx, outbox.ErrorFingerprint("order 3 rejected")); err != nil || n != 1 {
			t.Fatalf("RequeueError of k2's error = %d, %v; want 1", n, err)
		}
		if diff := cmp.Diff([]string{"l1"}, delivered()); diff != "" {
			t.Fatalf("delivered with k1 still parked (-want +got):\n%s", diff)
		}
		if r, err := ob.Lookup(ctx, "k2"); err != nil || r.State != outbox.StatePending {
			t.Fatalf("k2 = %v, %v; want it pending behind k1", r.State, err)
		}
		if n, err := ob.RequeueError(ctx, outbox.ErrorFingerprint("disk full")); err != nil || n != 1 {
			t.Fatalf("RequeueError of k1's error = %d, %v; want 1", n, err)
		}
		if diff := cmp.Diff([]string{"l1", "k1", "k2", "k3"}, delivered()); diff != "" {
			t.Fatalf("delivered once k1 was requeued (-want +got):\n%s", diff)
		}
	})
}

// TestParkedStatementsReadParkedRowsOnly checks the plans of the
// statements that read parked rows where a plan does not rest on the
// table's statistics (SQLite keeps none; MariaDB's follow the statements'
// index hints): each reads the index of the parked rows, never the table
// in seq order, which would pass every delivered row kept for retention.
// PostgreSQL plans by statistics; its plans were checked beside a million
// delivered rows, where they read outbox_blocked_idx too.
func TestParkedStatementsReadParkedRowsOnly(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		if db.Setup.IsPostgres() {
			t.Skip("PostgreSQL plans by the table's statistics")
		}
		d := db.Dialect()
		q := dialect.Render(d, d.SQL(), db.TablePrefix())
		part := outbox.PartitionOf("k")
		for _, tc := range []struct {
			name  string
			query string
			args  []any
			index string // the index MariaDB reads
		}{
			{"ParkedKeys", q.ParkedKeys, []any{0, 100}, "keel_outbox_state_idx"},
			{"ParkedScan", q.ParkedScan, []any{0, 1000}, "keel_outbox_state_idx"},
			{"Parked", q.Parked, []any{0, 100}, "keel_outbox_state_idx"},
			{"ParkedByName", q.ParkedByName, []any{0, "e", 100}, "keel_outbox_state_idx"},
			{"ParkedByKey", q.ParkedByKey, []any{0, part, "k", 100}, "keel_outbox_blocked_idx"},
			{"ParkedByKeyName", q.ParkedByKeyName, []any{0, part, "k", "e", 100}, "keel_outbox_blocked_idx"},
		} {
			explain := "EXPLAIN QUERY PLAN "
			if db.Setup.IsMySQL() {
				explain = "EXPLAIN "
			}
			plan := explainRows(t, db, explain+tc.query, tc.args...)
			var reads []string // how the plan reads the outbox as o
			for _, row := range plan {
				switch {
				case db.Setup.IsMySQL() && row["table"] == "o":
					reads = append(reads, row["key"])
				case !db.Setup.IsMySQL() && (strings.HasPrefix(row["detail"], "SCAN o") || strings.HasPrefix(row["detail"], "SEARCH o")):
					reads = append(reads, row["detail"])
				}
			}
			if len(reads) != 1 {
				t.Errorf("%s reads the outbox %d times: %v", tc.name, len(reads), plan)
				continue
			}
			ok := strings.Contains(reads[0], "USING INDEX keel_outbox_blocked_idx")
			if db.Setup.IsMySQL() {
				ok = reads[0] == tc.index
			}
			if !ok {
				t.Errorf("%s reads the outbox with %q; want the index of parked rows\nplan: %v", tc.name, reads[0], plan)
			}
		}
	})
}

// explainRows runs query and returns its rows as column name to text.
func explainRows(t *testing.T, db testdb.DB, query string, args ...any) []map[string]string {
	t.Helper()
	rows, err := db.SQL().Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i].String
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
