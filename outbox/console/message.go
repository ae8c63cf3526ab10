package console

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/outbox"
)

// messageView is what a message's page shows.
type messageView struct {
	outbox.Record
	Headers     [][2]string // sorted by name
	TraceID     string
	Payload     string // pretty JSON, text, or a hex dump
	PayloadKind string // "JSON", "text" or "binary"
	PayloadSize int
	PayloadCut  bool // Payload shows only the first PayloadLimit bytes
	Processed   []dispatch.Processed
	Fingerprint string // of LastError, linking to its group
}

func (c *Console) messagePage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > maxSearch {
		c.errorPage(w, r, http.StatusBadRequest, badRequest("pass the message's id as ?id=…; find it on the parked pages or by searching"))
		return
	}
	rec, err := c.ob.Lookup(r.Context(), id)
	if errors.Is(err, outbox.ErrUnknownMessage) {
		c.errorPage(w, r, http.StatusNotFound, badRequestf("no outbox message has id %q: it was never enqueued, or it was delivered and deleted (or cleaned up after its retention)", id))
		return
	}
	if err != nil {
		c.errorPage(w, r, http.StatusInternalServerError, err)
		return
	}
	v := messageView{Record: rec}
	for k, val := range rec.Headers {
		v.Headers = append(v.Headers, [2]string{k, val})
	}
	slices.SortFunc(v.Headers, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	v.TraceID = traceID(rec.Headers["traceparent"])
	v.PayloadSize = len(rec.Payload)
	v.Payload, v.PayloadKind, v.PayloadCut = showPayload(rec.Payload, c.opts.PayloadLimit)
	if rec.LastError != "" {
		v.Fingerprint = outbox.ErrorFingerprint(rec.LastError)
	}
	if v.Processed, err = dispatch.ProcessedBy(r.Context(), c.st, id); err != nil {
		c.errorPage(w, r, http.StatusInternalServerError, err)
		return
	}
	c.render(w, r, http.StatusOK, "message", "Message", v)
}

// traceID returns the trace id of a W3C traceparent header
// (version-traceid-spanid-flags), or "" when there is none or it is
// malformed.
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[1]) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(parts[1]); err != nil || strings.Trim(parts[1], "0") == "" {
		return ""
	}
	return parts[1]
}

// showPayload renders a payload for reading: JSON indented, other UTF-8
// text as it is, anything else as a hex dump; each cut to limit bytes of
// the payload. The payload itself is never changed: this is a copy for
// the page, and the template escapes it.
func showPayload(p []byte, limit int) (text, kind string, cut bool) {
	if len(p) > limit {
		p, cut = p[:limit], true
	}
	if !cut && json.Valid(p) {
		var b bytes.Buffer
		if json.Indent(&b, p, "", "  ") == nil {
			return b.String(), "JSON", false
		}
	}
	if utf8.Valid(p) || (cut && utf8.Valid(trimPartialRune(p))) {
		return string(trimPartialRune(p)), "text", cut
	}
	return hex.Dump(p), "binary", cut
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of p, left
// by cutting it.
func trimPartialRune(p []byte) []byte {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return p[:i]
			}
			break
		}
	}
	return p
}
