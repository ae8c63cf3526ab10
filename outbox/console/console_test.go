package console_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/console"
)

func TestPagesAndStatusCodes(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		f := newFixture(t, db, console.Options{Title: "orders"})
		pub := &publisher{fail: map[string]string{"m-2": "card declined"}}
		enqueue(t, f, message("m-1", "k-1", `{"n":1}`), message("m-2", "k-2", `{"n":2}`), message("m-3", "k-2", `{"n":3}`))
		drain(t, f, pub)

		for _, tc := range []struct {
			path string
			code int
			want string
		}{
			{"/", http.StatusOK, `data-stat="parked"><a href="/ops/parked">1</a>`},
			{"/overview", http.StatusOK, `data-stat="pending">1<`}, // m-3 waits behind m-2
			{"/parked", http.StatusOK, `data-key="k-2"`},
			{"/parked?view=errors", http.StatusOK, "card declined"},
			{"/parked?view=messages", http.StatusOK, `data-id="m-2"`},
			{"/parked?view=messages&key=k-2", http.StatusOK, `data-id="m-2"`},
			{"/parked?view=messages&name=order.paid", http.StatusOK, `data-id="m-2"`},
			{"/parked?q=m-2", http.StatusOK, `Message <a href="/ops/message?id=m-2">m-2</a>`},
			{"/message?id=m-2", http.StatusOK, `data-state="parked"`},
			{"/message?id=m-1", http.StatusOK, `data-state="delivered"`}, // kept for retention
			{"/message?id=nope", http.StatusNotFound, "never enqueued"},
			{"/message", http.StatusBadRequest, "pass the message&#39;s id"},
			{"/parked?view=bogus", http.StatusBadRequest, "unknown view"},
			{"/parked?view=messages&after=-3", http.StatusBadRequest, "after is"},
			{"/parked?view=messages&error=zz", http.StatusBadRequest, "fingerprint"},
			{"/processes", http.StatusOK, "No processes are stored"},
			{"/processes?type=nope", http.StatusNotFound, "no process of type"},
			{"/static/console.css", http.StatusOK, ".cards"},
			{"/static/console.js", http.StatusOK, "setInterval"},
			{"/nothing-here", http.StatusNotFound, ""},
		} {
			code, body := f.get(t, tc.path)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s: %d, want %d with %q\n%s", tc.path, code, tc.code, tc.want, cutBody(body))
			}
		}
		// Actions need POST.
		if code, _ := f.get(t, "/requeue"); code != http.StatusMethodNotAllowed {
			t.Errorf("GET /requeue: %d, want 405", code)
		}
	})
}

func TestCSRF(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		f := newFixture(t, db, console.Options{})
		enqueue(t, f, message("m-1", "k-1", `{}`))
		drain(t, f, &publisher{fail: map[string]string{"m-1": "no"}})
		tok := f.token(t)
		form := func(csrf string) url.Values {
			return url.Values{"what": {"message"}, "target": {"m-1"}, "confirm": {"yes"}, "csrf": {csrf}}
		}
		// A wrong token, and a forged one of the right shape.
		for _, bad := range []string{"x", strings.Repeat("A", 43)} {
			if code, body := f.post(t, "/requeue", form(bad)); code != http.StatusForbidden || !strings.Contains(body, "CSRF token") {
				t.Errorf("token %q: %d, want 403\n%s", bad, code, cutBody(body))
			}
		}
		// The right token from another site.
		req, _ := http.NewRequest(http.MethodPost, f.base+"/requeue", strings.NewReader(form(tok).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://evil.example")
		if code, _ := f.do(t, req); code != http.StatusForbidden {
			t.Errorf("cross-site POST: %d, want 403", code)
		}
		// No cookie at all: a fresh client that never loaded a page.
		other := &fixture{srv: f.srv, client: &http.Client{}, base: f.base}
		if code, _ := other.post(t, "/requeue", form(tok)); code != http.StatusForbidden {
			t.Errorf("POST without the cookie: %d, want 403", code)
		}
		if rec, err := f.ob.Lookup(t.Context(), "m-1"); err != nil || rec.State != outbox.StateParked {
			t.Fatalf("after refused requeues m-1 is %v (%v), want still parked", rec.State, err)
		}
		// The right token, same origin: it requeues.
		if code, body := f.post(t, "/requeue", form(tok)); code != http.StatusOK || !strings.Contains(body, `data-result="done"`) {
			t.Fatalf("POST with the token: %d\n%s", code, cutBody(body))
		}
		if rec, err := f.ob.Lookup(t.Context(), "m-1"); err != nil || rec.State != outbox.StatePending {
			t.Fatalf("after the requeue m-1 is %v (%v), want pending", rec.State, err)
		}
	})
}

func TestReadOnly(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		f := newFixture(t, db, console.Options{ReadOnly: true})
		enqueue(t, f, message("m-1", "k-1", `{}`))
		drain(t, f, &publisher{fail: map[string]string{"m-1": "no"}})
		for _, path := range []string{"/", "/parked", "/parked?view=errors", "/parked?view=messages", "/parked?view=messages&key=k-1", "/parked?q=k-1", "/message?id=m-1"} {
			code, body := f.get(t, path)
			if code != http.StatusOK || strings.Contains(body, `method="post"`) || strings.Contains(body, `data-action=`) {
				t.Errorf("read-only GET %s: %d, shows an action\n%s", path, code, cutBody(body))
			}
			if !strings.Contains(body, "read-only") {
				t.Errorf("read-only GET %s does not say it is read-only", path)
			}
		}
		code, body := f.post(t, "/requeue", url.Values{"what": {"message"}, "target": {"m-1"}, "confirm": {"yes"}, "csrf": {strings.Repeat("A", 43)}})
		if code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("read-only POST: %d\n%s", code, cutBody(body))
		}
		if rec, err := f.ob.Lookup(t.Context(), "m-1"); err != nil || rec.State != outbox.StateParked {
			t.Fatalf("read-only console changed m-1 to %v (%v)", rec.State, err)
		}
	})
}

func TestEscaping(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		f := newFixture(t, db, console.Options{})
		const (
			id  = `m-"><script>alert(1)</script>`
			key = `k-<script>alert(2)</script>`
		)
		payload := `{"note":"<script>alert(3)</script>","img":"<img src=x onerror=alert(4)>"}`
		m := message(id, key, payload)
		m.Headers = map[string]string{"x-evil": `"><script>alert(5)</script>`}
		enqueue(t, f, m)
		drain(t, f, &publisher{fail: map[string]string{id: `bad input <script>alert(6)</script>`}})
		rec, err := f.ob.Lookup(t.Context(), id)
		if err != nil || rec.State != outbox.StateParked || !strings.Contains(rec.LastError, "<script>alert(6)") {
			t.Fatalf("the hostile message is %v with error %q (%v), want parked with its error", rec.State, rec.LastError, err)
		}
		fp := outbox.ErrorFingerprint(rec.LastError)
		for _, path := range []string{
			"/", "/parked", "/parked?view=errors", "/parked?view=messages",
			"/parked?view=messages&key=" + url.QueryEscape(key),
			"/parked?view=messages&error=" + fp,
			"/parked?q=" + url.QueryEscape(key),
			"/parked?q=" + url.QueryEscape(id),
			"/message?id=" + url.QueryEscape(id),
		} {
			code, body := f.get(t, path)
			if code != http.StatusOK {
				t.Errorf("GET %s: %d\n%s", path, code, cutBody(body))
			}
			if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
				t.Errorf("GET %s renders user data as markup:\n%s", path, cutBody(body))
			}
		}
		_, body := f.get(t, "/message?id="+url.QueryEscape(id))
		for _, want := range []string{`&lt;script&gt;alert(3)&lt;/script&gt;`, `&lt;script&gt;alert(6)&lt;/script&gt;`, `&lt;script&gt;alert(5)&lt;/script&gt;`} {
			if !strings.Contains(body, want) {
				t.Errorf("message page lacks the escaped text %s", want)
			}
		}
		// The payload is shown indented, not changed: its escaped lines are
		// the indented JSON of the stored bytes.
		if !strings.Contains(body, "  &#34;note&#34;: &#34;&lt;script&gt;alert(3)&lt;/script&gt;&#34;,") {
			t.Errorf("payload not shown as indented JSON:\n%s", cutBody(body))
		}
		// A requeue of the hostile key reports it as text too.
		code, body := f.post(t, "/requeue", url.Values{"what": {"key"}, "target": {key}})
		if code != http.StatusOK || strings.Contains(body, "<script>alert") {
			t.Errorf("confirm page: %d\n%s", code, cutBody(body))
		}
	})
}

var (
	idCell  = regexp.MustCompile(`<tr data-id="([^"]+)"`)
	keyCell = regexp.MustCompile(`<tr data-key="([^"]+)">\s*<td><a[^>]*>[^<]*</a></td>\s*<td class="num" data-count="(\d+)"`)
	nextRef = regexp.MustCompile(`rel="next" href="/ops(/parked\?[^"]+)"`)
)

func TestPagingTenThousandParked(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		const n = 10000
		testdb.FillOutbox(t, db, n, 2)
		f := newFixture(t, db, console.Options{PageSize: 500})

		// Every parked message, page by page, in outbox order.
		var ids []string
		path, pages := "/parked?view=messages", 0
		for path != "" {
			code, body := f.get(t, path)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d\n%s", path, code, cutBody(body))
			}
			for _, m := range idCell.FindAllStringSubmatch(body, -1) {
				ids = append(ids, m[1])
			}
			path = next(body)
			if pages++; pages > n/500+1 {
				t.Fatal("the pages do not end")
			}
		}
		if len(ids) != n || pages != n/500 {
			t.Fatalf("paged %d messages over %d pages, want %d over %d", len(ids), pages, n, n/500)
		}
		seqs := make([]int, len(ids))
		for i, id := range ids {
			s, err := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
			if err != nil {
				t.Fatalf("unexpected id %q", id)
			}
			seqs[i] = s
		}
		if !slices.IsSorted(seqs) || slices.Compact(seqs)[n-1] != n {
			t.Fatal("pages are not in outbox order, or repeat or skip messages")
		}

		// Every key, page by page, with its count.
		total, keys := 0, map[string]bool{}
		path = "/parked?view=keys"
		for path != "" {
			code, body := f.get(t, path)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d", path, code)
			}
			for _, m := range keyCell.FindAllStringSubmatch(body, -1) {
				if keys[m[1]] {
					t.Fatalf("key %s on two pages", m[1])
				}
				keys[m[1]] = true
				c, _ := strconv.Atoi(m[2])
				total += c
			}
			path = next(body)
		}
		if len(keys) != testdb.FillKeys || total != n {
			t.Fatalf("keys view: %d keys holding %d messages, want %d holding %d", len(keys), total, testdb.FillKeys, n)
		}

		// "failure 0" to "failure 6" are one error, with the number set
		// aside.
		_, body := f.get(t, "/parked?view=errors")
		if rows := strings.Count(body, "<tr data-fingerprint="); rows != 1 || !strings.Contains(body, `<td class="num">10,000</td>`) {
			t.Fatalf("errors view: %d groups, want one of 10,000\n%s", rows, cutBody(body))
		}
	})
}

// next returns the path of the page's Next link, or "".
func next(body string) string {
	m := nextRef.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

func cutBody(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}

// TestRunLogsOutagesOnce closes the database under a running console: Run
// warns once, not at every sample, and returns when its context ends.
func TestRunLogsOutagesOnce(t *testing.T) {
	db := testdb.Open(t, testdb.SQLiteModernc)
	var logs lockedBuffer
	con, err := console.New(db.Store, console.Options{Refresh: 500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- con.Run(ctx) }()
	time.Sleep(600 * time.Millisecond)
	db.SQL().Close()
	time.Sleep(2200 * time.Millisecond) // four or five failed samples
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v, want nil when its context ends", err)
	}
	if n := strings.Count(logs.String(), "could not sample"); n != 1 {
		t.Fatalf("%d warnings over an outage of four samples, want 1:\n%s", n, logs.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
