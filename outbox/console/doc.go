// Package console serves a web console for a keel outbox: an overview of
// what is pending, retrying and parked, which relay holds which partitions
// and how fast they deliver; the parked messages grouped by partition key
// and by error, with a page per message; and the actions that put parked
// messages back in line: requeue one message, requeue a key (its messages
// go out in order), requeue every message that failed with the same error.
//
// A Console is an http.Handler. Mount it on the application's own server,
// behind the application's own authentication: the console has no users of
// its own, and anyone who reaches it can requeue messages unless it runs
// read-only.
//
//	c, err := console.New(st, console.Options{})
//	if err != nil {
//		return err
//	}
//	mux.Handle("/keel/", http.StripPrefix("/keel", requireOperator(c)))
//
// The console works out the prefix it is mounted under from the request, so
// http.StripPrefix is all it needs; Options.BasePath overrides that for
// proxies that rewrite paths.
//
// # Safety
//
// Every action is a POST that carries a CSRF token (a random value kept in
// a SameSite=Strict cookie and repeated in the form), is refused when the
// browser reports it as cross-origin, and asks for confirmation before it
// changes anything. Options.ReadOnly hides every action and refuses every
// POST. Pages are rendered with html/template: payloads, headers and error
// texts are shown as text, never as markup. The page loads nothing from
// the network: its stylesheet and its few lines of JavaScript are embedded
// in the binary.
//
// # The overview's history
//
// The overview refreshes itself and draws pending and delivered messages
// over the last minutes. Delivery counts come from the relays' heartbeats
// (outbox.Outbox.Relays), so they cover relays in every process; the
// console samples them, with the outbox counts, each time the overview is
// served, or every Options.Refresh while Run runs. Run keeps the history
// complete when nobody is watching.
//
// The `keel console` command serves the console alone, and `keel relay
// --console ADDR` serves it beside a relay.
package console
