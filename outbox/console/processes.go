package console

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"

	"github.com/keel-go/keel/dispatch/process"
)

// processesView is what the processes page shows: the running processes
// of one type (the first, unless one is chosen), with the stored types to
// choose from.
type processesView struct {
	Types     []string
	Type      string
	Processes []process.Info
	Next      template.URL
}

func (c *Console) processesPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	types, err := process.Types(ctx, c.st)
	if err != nil {
		c.errorPage(w, r, http.StatusInternalServerError, err)
		return
	}
	v := processesView{Types: types, Type: r.URL.Query().Get("type")}
	if v.Type == "" && len(types) > 0 {
		v.Type = types[0]
	}
	if v.Type != "" {
		if !slices.Contains(types, v.Type) {
			c.errorPage(w, r, http.StatusNotFound, badRequestf("no process of type %q is stored; pick one of the types listed on the processes page", v.Type))
			return
		}
		after := r.URL.Query().Get("after")
		if len(after) > maxSearch {
			c.errorPage(w, r, http.StatusBadRequest, badRequest("after is too long; use the Next link"))
			return
		}
		ps, err := process.List(ctx, c.st, v.Type, process.ListOptions{After: after, Limit: c.opts.PageSize + 1})
		if err != nil {
			c.errorPage(w, r, http.StatusInternalServerError, err)
			return
		}
		if len(ps) > c.opts.PageSize {
			ps = ps[:c.opts.PageSize]
			v.Next = template.URL("type=" + url.QueryEscape(v.Type) + "&after=" + url.QueryEscape(ps[len(ps)-1].ID))
		}
		v.Processes = ps
	}
	c.render(w, r, http.StatusOK, "processes", "Processes", v)
}
