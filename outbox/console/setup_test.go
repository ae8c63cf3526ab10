package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/console"
)

// fixture is a console mounted under /ops/ on a test server, and a client
// with a cookie jar, as a browser has.
type fixture struct {
	db     testdb.DB
	ob     *outbox.Outbox
	con    *console.Console
	srv    *httptest.Server
	client *http.Client
	base   string // the console's URL, without a trailing slash
}

func newFixture(t *testing.T, db testdb.DB, opts console.Options) *fixture {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testdb.Logger()
	}
	con, err := console.New(db.Store, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", con))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	ob, err := outbox.New(db.Store)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, ob: ob, con: con, srv: srv, client: &http.Client{Jar: jar}, base: srv.URL + "/ops"}
}

// get fetches a console path (such as "/parked?view=keys") and returns the
// status and body.
func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.do(t, req)
}

// post submits a form to a console path as the console's own page would:
// same origin, with the CSRF token from the cookie the pages set.
func (f *fixture) post(t *testing.T, path string, form url.Values) (int, string) {
	t.Helper()
	if form.Get("csrf") == "" {
		form.Set("csrf", f.token(t))
	}
	req, err := http.NewRequest(http.MethodPost, f.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return f.do(t, req)
}

// do sends req with the fixture's client and returns the status and body.
func (f *fixture) do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token loads a page and returns the CSRF token its forms carry.
func (f *fixture) token(t *testing.T) string {
	t.Helper()
	code, body := f.get(t, "/parked")
	if code != http.StatusOK {
		t.Fatalf("GET /parked: %d\n%s", code, body)
	}
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		// No form on the page (nothing parked): the cookie holds it.
		u, _ := url.Parse(f.base + "/")
		for _, c := range f.client.Jar.Cookies(u) {
			if c.Name == "keel_console_csrf" {
				return c.Value
			}
		}
		t.Fatal("the console set no CSRF cookie")
	}
	return m[1]
}

// publisher delivers every message except those whose id is in fail,
// which it fails permanently with fail's error text, so that the relay
// parks them on their first attempt. It records what it delivered, in
// order.
type publisher struct {
	mu        sync.Mutex
	fail      map[string]string // id -> error text
	delivered []outbox.Message
}

func (p *publisher) Publish(_ context.Context, batch []outbox.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, len(batch))
	failed := map[string]bool{} // keys with a failure in this batch
	for i, m := range batch {
		if failed[m.Key] {
			// A publisher keeps a key's order: after a failure, the key's
			// later messages are not tried.
			errs[i] = outbox.ErrNotAttempted
			continue
		}
		if text, ok := p.fail[m.ID]; ok {
			errs[i] = fmt.Errorf("%s: %w", text, outbox.ErrPermanent)
			failed[m.Key] = true
			continue
		}
		p.delivered = append(p.delivered, m)
	}
	if len(failed) > 0 {
		return &outbox.BatchError{Errs: errs}
	}
	return nil
}

// deliveredIDs returns the ids delivered so far, in order.
func (p *publisher) deliveredIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, len(p.delivered))
	for i, m := range p.delivered {
		ids[i] = m.ID
	}
	return ids
}

// heal makes the publisher deliver every message from now on.
func (p *publisher) heal() {
	p.mu.Lock()
	p.fail = nil
	p.mu.Unlock()
}

// enqueue writes msgs to the outbox in one transaction.
func enqueue(t *testing.T, f *fixture, msgs ...outbox.Message) {
	t.Helper()
	if err := f.ob.Enqueue(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// drain runs a relay over the publisher until nothing is deliverable. The
// relay keeps delivered rows for an hour, so that pages can show them.
func drain(t *testing.T, f *fixture, pub outbox.Publisher) {
	t.Helper()
	r, err := outbox.NewRelay(f.db.Store, pub, outbox.RelayConfig{
		Logger: testdb.Logger(), LeaseDuration: 2 * time.Second, Retention: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Drain(context.Background()); err != nil {
		var be *outbox.BatchError
		if !errors.As(err, &be) {
			t.Fatal(err)
		}
	}
}

// message returns a message of key k with a JSON payload.
func message(id, key, payload string) outbox.Message {
	return outbox.Message{ID: id, Key: key, Name: "order.paid", Payload: []byte(payload)}
}
