package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
)

// csrfCookie holds the browser's CSRF token; forms repeat it in the csrf
// field. A cross-site page can make the browser send the cookie (where
// SameSite allows) but can neither read it nor guess it, so it cannot
// write the matching field.
const csrfCookie = "keel_console_csrf"

// csrfToken returns the browser's token, setting a new cookie when the
// request carries none or a malformed one.
func (c *Console) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && validToken(ck.Value) {
		return ck.Value
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    tok,
		Path:     c.base(r) + "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	return tok
}

// validToken reports whether s looks like a token csrfToken made.
func validToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// checkPost refuses a POST that is cross-origin or whose csrf field does
// not match the cookie, and every POST in read-only mode. It reports
// whether the request may go on, having written the refusal if not.
func (c *Console) checkPost(w http.ResponseWriter, r *http.Request) bool {
	if c.opts.ReadOnly {
		c.errorPage(w, r, http.StatusForbidden, badRequest("this console is read-only: it shows the outbox but changes nothing"))
		return false
	}
	if err := c.cop.Check(r); err != nil {
		c.errorPage(w, r, http.StatusForbidden, badRequestf("refused a cross-origin request (%v); use the console's own pages", err))
		return false
	}
	ck, err := r.Cookie(csrfCookie)
	form := r.PostFormValue("csrf")
	if err != nil || !validToken(ck.Value) || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(form)) != 1 {
		c.errorPage(w, r, http.StatusForbidden, badRequest("the form's CSRF token is missing or does not match this browser's; reload the page and try again"))
		return false
	}
	return true
}
