package console

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// maxSearch bounds a search term: ids, keys and event names are shorter.
const maxSearch = 512

// parkedView is what the parked page shows: one of its views, with the
// link to the next page when there is one.
type parkedView struct {
	View string // keys, errors, messages or search

	Keys   []outbox.ParkedKey
	Errors []outbox.ParkedError

	Messages []outbox.ParkedMessage
	Key      string // the messages view's filters
	Name     string
	Error    string
	Group    *outbox.ParkedError // the group Error names, when found

	// Search results.
	Query    string
	Found    *outbox.Record // the message whose id is Query
	ByKey    []outbox.ParkedMessage
	ByName   []outbox.ParkedMessage
	MoreKey  bool
	MoreName bool

	Next template.URL // the query string of the next page; empty on the last
	Page int          // the errors view's page, from 0
}

func (c *Console) parkedPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := parkedView{View: q.Get("view")}
	if s := strings.TrimSpace(q.Get("q")); s != "" {
		v.View = "search"
		v.Query = s
	}
	if v.View == "" {
		v.View = "keys"
	}
	var err error
	switch v.View {
	case "keys":
		err = c.parkedKeys(r, &v)
	case "errors":
		err = c.parkedErrors(r, &v)
	case "messages":
		err = c.parkedMessages(r, &v)
	case "search":
		err = c.search(r, &v)
	default:
		err = badRequestf("unknown view %q; use keys, errors or messages", v.View)
	}
	if err != nil {
		c.errorPage(w, r, status(err), err)
		return
	}
	c.render(w, r, http.StatusOK, "parked", "Parked messages", v)
}

// status is the HTTP status of an error a page met.
func status(err error) int {
	var br badRequest
	if errors.As(err, &br) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// after reads the after parameter: an outbox position to page on from.
func after(r *http.Request) (int64, error) {
	s := r.URL.Query().Get("after")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequestf("after is %q; it must be an outbox position (a non-negative number) from a Next link", s)
	}
	return n, nil
}

func (c *Console) parkedKeys(r *http.Request, v *parkedView) error {
	from, err := after(r)
	if err != nil {
		return err
	}
	keys, err := c.ob.ParkedKeys(r.Context(), outbox.ParkedKeysQuery{AfterSeq: from, Limit: c.opts.PageSize + 1})
	if err != nil {
		return err
	}
	if len(keys) > c.opts.PageSize {
		keys = keys[:c.opts.PageSize]
		v.Next = template.URL("view=keys&after=" + strconv.FormatInt(keys[len(keys)-1].FirstSeq, 10))
	}
	v.Keys = keys
	return nil
}

func (c *Console) parkedErrors(r *http.Request, v *parkedView) error {
	page := 0
	if s := r.URL.Query().Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return badRequestf("page is %q; it must be a page number from a Next link", s)
		}
		page = n
	}
	groups, err := c.ob.ParkedErrors(r.Context())
	if err != nil {
		return err
	}
	lo := min(page*c.opts.PageSize, len(groups))
	hi := min(lo+c.opts.PageSize, len(groups))
	v.Errors, v.Page = groups[lo:hi], page
	if hi < len(groups) {
		v.Next = template.URL("view=errors&page=" + strconv.Itoa(page+1))
	}
	return nil
}

func (c *Console) parkedMessages(r *http.Request, v *parkedView) error {
	q := r.URL.Query()
	from, err := after(r)
	if err != nil {
		return err
	}
	v.Key, v.Name, v.Error = q.Get("key"), q.Get("name"), q.Get("error")
	if len(v.Key) > maxSearch || len(v.Name) > maxSearch {
		return badRequestf("the key or name filter is longer than %d bytes; no key or event name is that long", maxSearch)
	}
	if v.Error != "" {
		groups, err := c.ob.ParkedErrors(r.Context())
		if err != nil {
			return err
		}
		for i := range groups {
			if groups[i].Fingerprint == v.Error {
				v.Group = &groups[i]
			}
		}
	}
	ms, err := c.ob.Parked(r.Context(), outbox.ParkedQuery{
		Key: v.Key, Name: v.Name, Error: v.Error, AfterSeq: from, Limit: c.opts.PageSize + 1,
	})
	if err != nil {
		return asBadRequest(err)
	}
	if len(ms) > c.opts.PageSize {
		ms = ms[:c.opts.PageSize]
		next := make([]string, 0, 4)
		next = append(next, "view=messages")
		for _, f := range [][2]string{{"key", v.Key}, {"name", v.Name}, {"error", v.Error}} {
			if f[1] != "" {
				next = append(next, f[0]+"="+url.QueryEscape(f[1]))
			}
		}
		next = append(next, "after="+strconv.FormatInt(ms[len(ms)-1].Seq, 10))
		v.Next = template.URL(strings.Join(next, "&"))
	}
	v.Messages = ms
	return nil
}

// search looks the term up as a message id, a partition key and an event
// name, and shows what matched each.
func (c *Console) search(r *http.Request, v *parkedView) error {
	if len(v.Query) > maxSearch {
		return badRequestf("the search is longer than %d bytes; search for a message id, a partition key or an event name", maxSearch)
	}
	ctx := r.Context()
	rec, err := c.ob.Lookup(ctx, v.Query)
	switch {
	case err == nil:
		v.Found = &rec
	case !errors.Is(err, outbox.ErrUnknownMessage):
		return err
	}
	n := c.opts.PageSize
	if v.ByKey, err = c.ob.Parked(ctx, outbox.ParkedQuery{Key: v.Query, Limit: n + 1}); err != nil {
		return err
	}
	if v.ByName, err = c.ob.Parked(ctx, outbox.ParkedQuery{Name: v.Query, Limit: n + 1}); err != nil {
		return err
	}
	if len(v.ByKey) > n {
		v.ByKey, v.MoreKey = v.ByKey[:n], true
	}
	if len(v.ByName) > n {
		v.ByName, v.MoreName = v.ByName[:n], true
	}
	return nil
}

// asBadRequest reports an invalid query (a malformed fingerprint, say) as
// the browser's mistake.
func asBadRequest(err error) error {
	if errors.Is(err, store.ErrInvalidConfig) {
		return badRequest(err.Error())
	}
	return err
}
