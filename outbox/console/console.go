package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// Defaults of Options.
const (
	// DefaultRefresh is how often the overview refreshes itself.
	DefaultRefresh = 2 * time.Second
	// DefaultHistory is how far back the overview's chart looks.
	DefaultHistory = 10 * time.Minute
	// DefaultPageSize is how many rows a list shows per page.
	DefaultPageSize = 50
	// DefaultPayloadLimit is how many bytes of a payload a message's page
	// shows.
	DefaultPayloadLimit = 64 << 10
)

// Options configure a Console. The zero value is a read-write console with
// the defaults above.
type Options struct {
	// ReadOnly hides every action and refuses every POST with 403
	// Forbidden: the console only shows.
	ReadOnly bool
	// Title names the deployment in the page header, for operators who
	// watch more than one. If empty, "keel".
	Title string
	// BasePath is the path the console is mounted under, such as "/keel",
	// for links in its pages. If empty, the console works it out from each
	// request: the part of the request's path that http.StripPrefix
	// removed.
	BasePath string
	// Refresh is how often the overview refreshes itself in the browser,
	// and how often Run samples. If zero, DefaultRefresh; at least 500ms.
	Refresh time.Duration
	// History is how far back the overview's chart looks. If zero,
	// DefaultHistory; at most 24 hours.
	History time.Duration
	// PageSize is how many rows a list shows per page. If zero,
	// DefaultPageSize; at most 1,000.
	PageSize int
	// PayloadLimit is how many bytes of a payload a message's page shows;
	// the page says when it cuts one short. If zero, DefaultPayloadLimit.
	PayloadLimit int
	// Logger receives the console's logs: each action at Info, failed
	// database reads at Warn. If nil, the store's logger.
	Logger *slog.Logger
}

// Console is the web console of one store's outbox. It is an http.Handler
// and safe for concurrent use.
type Console struct {
	st    *store.Store
	ob    *outbox.Outbox
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	cop   *http.CrossOriginProtection
	hist  *history
	pages *pages
}

// New returns the console of st's outbox. It does not touch the database;
// a store that is not migrated shows its error on the first page served.
func New(st *store.Store, opts Options) (*Console, error) {
	if st == nil {
		return nil, dialect.Invalid("console.New: nil *store.Store; pass the store from store.Open")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	ob, err := outbox.New(st)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = st.Logger()
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{
		st: st, ob: ob, opts: opts, log: log,
		cop:   http.NewCrossOriginProtection(),
		hist:  newHistory(opts.History, opts.Refresh/2),
		pages: p,
	}
	c.routes()
	return c, nil
}

func (o *Options) validate() error {
	bad := func(format string, args ...any) error {
		return dialect.Invalid("console.Options."+format, args...)
	}
	switch {
	case o.Refresh == 0:
		o.Refresh = DefaultRefresh
	case o.Refresh < 500*time.Millisecond:
		return bad("Refresh is %v; use at least 500ms, or 0 for %v", o.Refresh, DefaultRefresh)
	}
	switch {
	case o.History == 0:
		o.History = DefaultHistory
	case o.History < 0 || o.History > 24*time.Hour:
		return bad("History is %v; use up to 24h, or 0 for %v", o.History, DefaultHistory)
	}
	switch {
	case o.PageSize == 0:
		o.PageSize = DefaultPageSize
	case o.PageSize < 0 || o.PageSize > 1000:
		return bad("PageSize is %d; use 1 to 1000, or 0 for %d", o.PageSize, DefaultPageSize)
	}
	switch {
	case o.PayloadLimit == 0:
		o.PayloadLimit = DefaultPayloadLimit
	case o.PayloadLimit < 0:
		return bad("PayloadLimit is %d; use a positive size, or 0 for %d", o.PayloadLimit, DefaultPayloadLimit)
	}
	if o.Title == "" {
		o.Title = "keel"
	}
	if o.BasePath != "" {
		if !strings.HasPrefix(o.BasePath, "/") || strings.ContainsAny(o.BasePath, "?#\"'<> ") {
			return bad("BasePath is %q; use an absolute path such as \"/keel\", or leave it empty", o.BasePath)
		}
		o.BasePath = strings.TrimSuffix(o.BasePath, "/")
	}
	return nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", c.overviewPage)
	m.HandleFunc("GET /overview", c.overviewFragment)
	m.HandleFunc("GET /parked", c.parkedPage)
	m.HandleFunc("GET /message", c.messagePage)
	m.HandleFunc("GET /processes", c.processesPage)
	m.HandleFunc("POST /requeue", c.requeue)
	m.Handle("GET /static/", http.StripPrefix("/static", staticFiles()))
	c.mux = m
}

// ServeHTTP serves the console's pages.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy",
		"default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	c.mux.ServeHTTP(w, r)
}

// Run samples the outbox every Options.Refresh until ctx ends, so that the
// overview's chart covers the time nobody watched. It returns nil when ctx
// ends. Without Run the console samples as it serves the overview. While
// the database cannot be read it logs a warning at the first failure and
// then once a minute, and says when sampling works again.
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Refresh)
	defer t.Stop()
	var failingSince, warned time.Time
	for {
		_, err := c.sample(ctx, true)
		switch now := time.Now(); {
		case ctx.Err() != nil:
		case err != nil && (failingSince.IsZero() || now.Sub(warned) >= time.Minute):
			if failingSince.IsZero() {
				failingSince = now
			}
			warned = now
			c.log.WarnContext(ctx, "keel: console could not sample the outbox", "err", err, "failing_for", now.Sub(failingSince).Round(time.Second))
		case err == nil && !failingSince.IsZero():
			c.log.InfoContext(ctx, "keel: console samples the outbox again", "failed_for", now.Sub(failingSince).Round(time.Second))
			failingSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// base returns the path the console is mounted under, without a trailing
// slash: Options.BasePath, or what http.StripPrefix removed from r's path.
func (c *Console) base(r *http.Request) string {
	if c.opts.BasePath != "" {
		return c.opts.BasePath
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || r.RequestURI == "" {
		return ""
	}
	full := u.Path
	if prefix, ok := strings.CutSuffix(full, r.URL.Path); ok {
		return strings.TrimSuffix(prefix, "/")
	}
	return ""
}

// errorPage renders an error page with status code: what went wrong, in
// one sentence, for an operator.
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, code int, err error) {
	if code >= 500 {
		c.log.WarnContext(r.Context(), "keel: console page failed", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, code, "error", "Error", map[string]any{"Status": http.StatusText(code), "Message": explain(err)})
}

// explain turns an error into the sentence an operator reads.
func explain(err error) string {
	switch {
	case errors.Is(err, store.ErrNotMigrated):
		return err.Error() + " (run `keel migrate`, or Store.Migrate, first)"
	case errors.Is(err, context.DeadlineExceeded):
		return "the database did not answer in time: " + err.Error()
	}
	return err.Error()
}

// badRequest is an error in what the browser sent; it renders as 400.
type badRequest string

func (b badRequest) Error() string { return string(b) }

func badRequestf(format string, args ...any) error { return badRequest(fmt.Sprintf(format, args...)) }
