package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// staticFiles serves the embedded stylesheet and script.
func staticFiles() http.Handler {
	sub, _ := fs.Sub(staticFS, "static") // the directory is embedded above
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}

// pages holds one template set per page, each the layout with the page's
// content.
type pages struct {
	sets map[string]*template.Template
}

var funcs = template.FuncMap{
	"ago":   ago,
	"age":   age,
	"when":  when,
	"cut":   cut,
	"count": count,
	"rate":  rate,
	"args":  args,
	"int64": toInt64,
}

// args builds the map a shared template takes from pairs of names and
// values: (args "View" $ "What" "key").
func args(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("args: %d values; pass names and values in pairs", len(kv))
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("args: name %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

// toInt64 converts a number for count.
func toInt64(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n + 0.5)
	}
	return 0
}

func parsePages() (*pages, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("keel: console templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		set, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("keel: console template %s: %w", n, err)
		}
		p.sets[name] = set
	}
	return p, nil
}

// view is what every page's template receives.
type view struct {
	Title    string // the deployment, Options.Title
	Heading  string // the page's heading
	Base     string // the mount path, for links
	CSRF     string // the token forms repeat
	ReadOnly bool
	Refresh  int64 // overview refresh, ms
	Now      time.Time
	Data     any
}

// render executes page into a buffer, then writes it with code, so that a
// template error becomes a 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, page, heading string, data any) {
	set := c.pages.sets[page]
	v := view{
		Title: c.opts.Title, Heading: heading, Base: c.base(r), ReadOnly: c.opts.ReadOnly,
		Refresh: c.opts.Refresh.Milliseconds(), Now: time.Now(), Data: data,
	}
	if !c.opts.ReadOnly {
		v.CSRF = c.csrfToken(w, r)
	}
	var b bytes.Buffer
	if err := set.ExecuteTemplate(&b, "layout.html", v); err != nil {
		c.log.ErrorContext(r.Context(), "keel: console template failed", "page", page, "err", err)
		http.Error(w, "keel console: the page could not be rendered; see the application's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// fragment executes one named template of page alone, for the overview's
// refresh.
func (c *Console) fragment(w http.ResponseWriter, r *http.Request, page, name string, data any) {
	v := view{Base: c.base(r), ReadOnly: c.opts.ReadOnly, Now: time.Now(), Data: data}
	var b bytes.Buffer
	if err := c.pages.sets[page].ExecuteTemplate(&b, name, v); err != nil {
		c.log.ErrorContext(r.Context(), "keel: console template failed", "page", page, "err", err)
		http.Error(w, "keel console: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

// ago says how long before now t was, in the largest sensible unit.
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + age(-d)
	}
	return age(d) + " ago"
}

// age writes a duration for people: "850ms", "42s", "3m10s", "5h2m",
// "3d4h".
func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int64(d/time.Minute), int64(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int64(d/time.Hour), int64(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int64(d/(24*time.Hour)), int64(d%(24*time.Hour)/time.Hour))
}

// when writes a time in UTC to the millisecond, or "—" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// cut shortens s to at most n bytes on a rune boundary, marking the cut.
func cut(n int, s string) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// count writes n with thousands separators.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rate writes a rate in messages per second, or "—" when unknown.
func rate(r float64) string {
	switch {
	case r < 0:
		return "—"
	case r < 10:
		return strconv.FormatFloat(r, 'f', 1, 64) + "/s"
	}
	return count(int64(r+0.5)) + "/s"
}
