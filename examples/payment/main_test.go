package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/storetest"
)

const want = `
User u-1 has a balance of 0.00.

1. PayPal webhook 7XK40918: u-1 deposited 25.00.
   One unit saved payment pay-7XK40918 and raised the balance: balance 25.00 (version 2).
   PayPal did not get our answer and sends the same webhook again.
   DoIdempotent: key paypal:7XK40918 was already applied as pay-7XK40918; nothing changed, answer 200 OK again.
   Still: balance 25.00 (version 2).

2. Start the relay. It hands the outbox to the in-process bus; the first hand-over of
   each message loses its acknowledgement, so the relay delivers each one again.
   The bus received each of the 3 messages (balance.opened, payment.received,
   balance.credited) twice. mail.send-receipt ran once: its inbox row, committed with
   the receipt, made the second delivery a no-op.
   Receipts issued: 1.

3. 8 goroutines deliver 100 webhooks of 1.00 each; every webhook arrives twice, concurrently.
   Applied 100, refused as duplicates 100.
   Balance of u-1: 125.00 = 25.00 + 100 x 1.00, exact (version 102).
   No unit conflicted: SQLite's write lock, taken at BEGIN, queued them. On PostgreSQL
   they overlap, and Do re-runs the ones that lose a race for the balance.
   Receipts issued: 101, one per payment.

The relay has delivered everything: 0 pending, 0 parked.
`

// conflicts matches the lines about version conflicts in step 3: how many
// runs were retried depends on scheduling, and SQLite has none to report.
var conflicts = regexp.MustCompile(`(?m)^   (No unit conflicted|they overlap|\d+ runs lost a race).*\n`)

// TestRun tells the example's story on every database the environment
// offers, each in a fresh one.
func TestRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		t.Parallel()
		var out strings.Builder
		if err := tell(t.Context(), &out, st); err != nil {
			t.Fatalf("tell: %v\noutput so far:\n%s", err, out.String())
		}
		got := out.String()
		if st.Dialect().Name() == storetest.SQLite {
			if diff := cmp.Diff(strings.TrimPrefix(want, "\n"), got); diff != "" {
				t.Errorf("output differs (-want +got):\n%s", diff)
			}
			return
		}
		if !conflicts.MatchString(got) {
			t.Errorf("output does not report version conflicts:\n%s", got)
		}
		norm := func(s string) string { return conflicts.ReplaceAllString(strings.TrimPrefix(s, "\n"), "") }
		if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
			t.Errorf("output differs (-want +got):\n%s", diff)
		}
	})
}
