package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// TestEnqueueRejectsOversizedValues guards the size limits of the indexed
// columns. Before them, a 3,000-byte partition key was stored on SQLite and
// on PostgreSQL alike, and broke the relay later, when recording its first
// failure put it into an index that cannot hold it; an ID of any length
// was stored too. Now EnqueueTx refuses them up front, naming the limit,
// and writes nothing of the call.
func TestEnqueueRejectsOversizedValues(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		healthy := outbox.Message{Name: "a", Key: "fine", Payload: []byte{}}
		for _, tc := range []struct {
			name  string
			msg   outbox.Message
			limit string
		}{
			{"3,000-byte key", outbox.Message{Name: "a", Key: strings.Repeat("k", 3000), Payload: []byte{}}, "512"},
			{"10,000-byte key", outbox.Message{Name: "a", Key: strings.Repeat("k", 10000), Payload: []byte{}}, "512"},
			{"10,000-byte aggregate id as key", outbox.Message{Name: "a", AggregateID: strings.Repeat("k", 10000), Payload: []byte{}}, "512"},
			{"256-byte id", outbox.Message{ID: strings.Repeat("i", 256), Name: "a", Payload: []byte{}}, "255"},
		} {
			// The bad message comes second: the first must not be written either.
			err := ob.Enqueue(ctx, healthy, tc.msg)
			if !errors.Is(err, outbox.ErrInvalidMessage) || !strings.Contains(err.Error(), "limit is "+tc.limit) {
				t.Errorf("%s: err = %v; want ErrInvalidMessage naming the limit of %s bytes", tc.name, err, tc.limit)
			}
			if err != nil && len(err.Error()) > 500 {
				t.Errorf("%s: the error repeats the value: %d bytes long", tc.name, len(err.Error()))
			}
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); n != 0 {
			t.Fatalf("%d rows stored by rejected calls", n)
		}
		// At the limits, messages are stored.
		atLimit := outbox.Message{ID: strings.Repeat("i", 255), Name: "a", Key: strings.Repeat("k", 512), Payload: []byte{}}
		if err := ob.Enqueue(ctx, atLimit); err != nil {
			t.Fatalf("a 255-byte id and a 512-byte key: %v", err)
		}
	})
}

// TestEnqueueRejectsInvalidUTF8 guards against text keel cannot store as
// given. Before, invalid UTF-8 in a header was silently replaced by U+FFFD
// (encoding/json does that), and in a key, id or name was stored as is on
// SQLite but refused by PostgreSQL with a driver error at INSERT; so was a
// NUL byte in a text field.
func TestEnqueueRejectsInvalidUTF8(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		const bad = "caf\xe9\xff" // Latin-1 é, and a byte no UTF-8 text holds
		for _, tc := range []struct {
			name string
			msg  outbox.Message
			says string
		}{
			{"NUL in the key", outbox.Message{Name: "a", Key: "k\x00", Payload: []byte{}}, "NUL"},
			{"NUL in the name", outbox.Message{Name: "a\x00b", Payload: []byte{}}, "NUL"},
			{"header name", outbox.Message{Name: "a", Payload: []byte{}, Headers: map[string]string{bad: "v"}}, ""},
			{"header value", outbox.Message{Name: "a", Payload: []byte{}, Headers: map[string]string{"h": bad}}, ""},
			{"key", outbox.Message{Name: "a", Key: bad, Payload: []byte{}}, ""},
			{"id", outbox.Message{ID: bad, Name: "a", Payload: []byte{}}, ""},
			{"name", outbox.Message{Name: bad, Payload: []byte{}}, ""},
			{"topic", outbox.Message{Name: "a", Topic: bad, Payload: []byte{}}, ""},
			{"aggregate id", outbox.Message{Name: "a", AggregateID: bad, Payload: []byte{}}, ""},
			{"correlation id", outbox.Message{Name: "a", CorrelationID: bad, Payload: []byte{}}, ""},
		} {
			if tc.says == "" {
				tc.says = "UTF-8"
			}
			err := ob.Enqueue(ctx, outbox.Message{Name: "ok", Payload: []byte{}}, tc.msg)
			if !errors.Is(err, outbox.ErrInvalidMessage) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s: err = %v; want ErrInvalidMessage saying %q", tc.name, err, tc.says)
			}
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); n != 0 {
			t.Fatalf("%d rows stored by rejected calls", n)
		}
	})
}

// TestHeadersRoundTrip checks that header names and values with markup,
// quotes, backslashes and non-ASCII text reach the publisher byte for byte,
// with every other text field.
func TestHeadersRoundTrip(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		sent := outbox.Message{
			Name: "commande.passée", Key: "clé-ü-日本", Topic: "événements", AggregateID: "agrégat/1",
			CorrelationID: `"quoted"`, CausationID: "<cause>", Payload: []byte{0, 1, 0xff},
			Headers: map[string]string{
				"html":            "<b>Tom & Jerry</b> &amp; <script>",
				"quotes":          `"double" 'single' \backslash\ ` + "`back`",
				"ünïcödé-naïve":   "日本語のテキスト — ç'est «ça» 🎉",
				"control":         "tab\there\nnewline\x00nul",
				"json-ish":        `{"a":[1,2]}`,
				"empty":           "",
				`na"me\with<&>`:   "value",
				"trailing space ": " leading space",
			},
		}
		if err := ob.Enqueue(ctx, sent); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		if n, err := newRelay(t, db.Store, rec, outbox.RelayConfig{}).Drain(ctx); err != nil || n != 1 {
			t.Fatalf("Drain = %d, %v", n, err)
		}
		got := rec.messages()[0]
		if diff := cmp.Diff(sent.Headers, got.Headers); diff != "" {
			t.Errorf("headers (-sent +delivered):\n%s", diff)
		}
		for _, f := range []struct{ what, sent, got string }{
			{"Name", sent.Name, got.Name}, {"Key", sent.Key, got.Key}, {"Topic", sent.Topic, got.Topic},
			{"AggregateID", sent.AggregateID, got.AggregateID}, {"CorrelationID", sent.CorrelationID, got.CorrelationID},
			{"CausationID", sent.CausationID, got.CausationID}, {"Payload", string(sent.Payload), string(got.Payload)},
		} {
			if f.sent != f.got {
				t.Errorf("%s: sent %q, delivered %q", f.what, f.sent, f.got)
			}
		}
	})
}
