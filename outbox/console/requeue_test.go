package console_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/console"
)

func TestRequeueActions(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		f := newFixture(t, db, console.Options{})
		pub := &publisher{fail: map[string]string{
			"a-1": "card declined",
			"b-1": "timeout after 3s", // b-1 and c-1 fail alike
			"c-1": "timeout after 15s",
			"d-1": "card declined",
		}}
		enqueue(t, f,
			message("a-1", "a", `{}`), message("a-2", "a", `{}`), message("a-3", "a", `{}`),
			message("b-1", "b", `{}`), message("b-2", "b", `{}`),
			message("c-1", "c", `{}`),
			message("d-1", "d", `{}`),
			message("e-1", "e", `{}`),
		)
		drain(t, f, pub)
		if got := pub.deliveredIDs(); !slices.Equal(got, []string{"e-1"}) {
			t.Fatalf("delivered %v before any requeue, want [e-1]", got)
		}
		requeue := func(what, target string, confirm bool) (int, string) {
			form := url.Values{"what": {what}, "target": {target}}
			if confirm {
				form.Set("confirm", "yes")
			}
			return f.post(t, "/requeue", form)
		}

		// Unknown and unparked ids are reported plainly, before and after
		// the confirmation, and change nothing.
		for _, confirm := range []bool{false, true} {
			if code, body := requeue("message", "nope", confirm); code != http.StatusNotFound || !strings.Contains(body, `no outbox message has id &#34;nope&#34;`) {
				t.Errorf("requeue unknown id (confirm %v): %d\n%s", confirm, code, cutBody(body))
			}
			if code, body := requeue("message", "e-1", confirm); code != http.StatusConflict || !strings.Contains(body, "was delivered at") {
				t.Errorf("requeue a delivered message (confirm %v): %d\n%s", confirm, code, cutBody(body))
			}
			if code, body := requeue("message", "a-2", confirm); code != http.StatusConflict || !strings.Contains(body, "is pending, not parked") {
				t.Errorf("requeue a pending message (confirm %v): %d\n%s", confirm, code, cutBody(body))
			}
			if code, body := requeue("key", "zzz", confirm); code != http.StatusConflict || !strings.Contains(body, "has no parked messages") {
				t.Errorf("requeue a key with nothing parked (confirm %v): %d\n%s", confirm, code, cutBody(body))
			}
		}
		if code, body := requeue("error", "0123456789ab", true); code != http.StatusConflict || !strings.Contains(body, "no parked message has this error") {
			t.Errorf("requeue an unknown error group: %d\n%s", code, cutBody(body))
		}
		if code, body := requeue("error", "not-a-fingerprint", true); code != http.StatusBadRequest {
			t.Errorf("requeue a malformed fingerprint: %d\n%s", code, cutBody(body))
		}
		if code, _ := requeue("everything", "x", true); code != http.StatusBadRequest {
			t.Errorf("requeue an unknown kind: %d, want 400", code)
		}

		// A key: the confirmation lists its parked message and changes
		// nothing; confirming requeues it, and the relay then delivers the
		// key in order.
		code, body := requeue("key", "a", false)
		if code != http.StatusOK || !strings.Contains(body, `data-action="confirm"`) || !strings.Contains(body, `data-id="a-1"`) {
			t.Fatalf("confirm requeue of key a: %d\n%s", code, cutBody(body))
		}
		if rec, _ := f.ob.Lookup(t.Context(), "a-1"); rec.State != outbox.StateParked {
			t.Fatalf("the confirmation page requeued a-1 (%v)", rec.State)
		}
		code, body = requeue("key", "a", true)
		if code != http.StatusOK || !strings.Contains(body, `data-count="1"`) {
			t.Fatalf("requeue key a: %d\n%s", code, cutBody(body))
		}
		if code, body := requeue("key", "a", true); code != http.StatusConflict {
			t.Errorf("requeue key a twice: %d\n%s", code, cutBody(body))
		}

		// An error group: b-1 and c-1 read "timeout after #s".
		groups, err := f.ob.ParkedErrors(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var timeout string
		for _, g := range groups {
			if strings.HasPrefix(g.Sample, "timeout after") {
				timeout = g.Fingerprint
				if g.Count != 2 || g.Keys != 2 {
					t.Fatalf("timeout group: %d messages over %d keys, want 2 over 2", g.Count, g.Keys)
				}
			}
		}
		code, body = requeue("error", timeout, false)
		if code != http.StatusOK || !strings.Contains(body, "Requeue the 2 parked messages") {
			t.Fatalf("confirm requeue of the timeout group: %d\n%s", code, cutBody(body))
		}
		if code, body = requeue("error", timeout, true); code != http.StatusOK || !strings.Contains(body, `data-count="2"`) {
			t.Fatalf("requeue the timeout group: %d\n%s", code, cutBody(body))
		}

		// One message: d-1.
		if code, body = requeue("message", "d-1", true); code != http.StatusOK || !strings.Contains(body, `data-count="1"`) {
			t.Fatalf("requeue d-1: %d\n%s", code, cutBody(body))
		}

		pub.heal()
		drain(t, f, pub)
		got := pub.deliveredIDs()
		for _, key := range []string{"a", "b", "c", "d", "e"} {
			var ofKey []string
			for _, id := range got {
				if strings.HasPrefix(id, key+"-") {
					ofKey = append(ofKey, id)
				}
			}
			want := map[string][]string{"a": {"a-1", "a-2", "a-3"}, "b": {"b-1", "b-2"}, "c": {"c-1"}, "d": {"d-1"}, "e": {"e-1"}}[key]
			if !slices.Equal(ofKey, want) {
				t.Errorf("key %s delivered %v, want %v in that order", key, ofKey, want)
			}
		}
		if s, err := f.ob.Stats(t.Context()); err != nil || s.Parked != 0 || s.Pending != 0 {
			t.Fatalf("after the requeues: %+v (%v), want nothing parked or pending", s, err)
		}
	})
}
