package console

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/keel-go/keel/outbox"
)

// requeueView is what the confirmation and result pages of a requeue show.
type requeueView struct {
	What   string // message, key or error
	Target string // the message id, the key or the fingerprint

	// Confirmation.
	Record   *outbox.Record         // the message
	Messages []outbox.ParkedMessage // the first of the key's parked messages
	More     bool                   // the key has more than Messages
	Group    *outbox.ParkedError    // the error group

	// Result.
	Done    bool
	Count   int64
	Problem string // why nothing was requeued
	Key     string // the requeued message's key
}

// requeue serves the console's one action. A POST without confirm=yes
// shows what would be requeued and asks; with it, requeues and reports.
func (c *Console) requeue(w http.ResponseWriter, r *http.Request) {
	if !c.checkPost(w, r) {
		return
	}
	v := requeueView{What: r.PostFormValue("what"), Target: r.PostFormValue("target")}
	switch {
	case v.What != "message" && v.What != "key" && v.What != "error":
		c.errorPage(w, r, http.StatusBadRequest, badRequestf("what is %q; requeue a message, a key or an error group", v.What))
		return
	case v.Target == "" || len(v.Target) > maxSearch:
		c.errorPage(w, r, http.StatusBadRequest, badRequestf("target is empty or longer than %d bytes; pass the message id, the key or the error fingerprint", maxSearch))
		return
	}
	ctx := r.Context()
	if r.PostFormValue("confirm") != "yes" {
		code, err := c.confirm(r, &v)
		if err != nil {
			c.errorPage(w, r, status(err), err)
			return
		}
		c.render(w, r, code, "requeue", "Requeue", v)
		return
	}
	var err error
	switch v.What {
	case "message":
		err = c.ob.Requeue(ctx, v.Target)
		if err == nil {
			v.Count = 1
		}
	case "key":
		v.Count, err = c.ob.RequeueKey(ctx, v.Target)
	case "error":
		v.Count, err = c.ob.RequeueError(ctx, v.Target)
	}
	code := http.StatusOK
	switch {
	case errors.Is(err, outbox.ErrNotParked):
		rec, lerr := c.ob.Lookup(ctx, v.Target)
		code = notParked(&v, rec, lerr)
	case err != nil:
		c.errorPage(w, r, status(asBadRequest(err)), asBadRequest(err))
		return
	case v.Count == 0:
		code = http.StatusConflict
		if v.What == "key" {
			v.Problem = fmt.Sprintf("key %q has no parked messages, so nothing was requeued: they were requeued already, or never parked", v.Target)
		} else {
			v.Problem = "no parked message has this error any more, so nothing was requeued: the group was requeued already"
		}
	default:
		v.Done = true
		c.log.InfoContext(ctx, "keel: console requeued parked messages", "what", v.What, "target", v.Target, "messages", v.Count)
		if v.What == "message" {
			if rec, err := c.ob.Lookup(ctx, v.Target); err == nil {
				v.Key = rec.Key
			}
		}
	}
	c.render(w, r, code, "requeue", "Requeue", v)
}

// confirm fills in what a requeue would touch and returns the status of
// the confirmation page: 200 when there is something to confirm, 404 or
// 409 when the target is unknown or not parked.
func (c *Console) confirm(r *http.Request, v *requeueView) (int, error) {
	ctx := r.Context()
	switch v.What {
	case "message":
		rec, err := c.ob.Lookup(ctx, v.Target)
		if err != nil && !errors.Is(err, outbox.ErrUnknownMessage) {
			return 0, err
		}
		if err != nil || rec.State != outbox.StateParked {
			return notParked(v, rec, err), nil
		}
		v.Record = &rec
	case "key":
		ms, err := c.ob.Parked(ctx, outbox.ParkedQuery{Key: v.Target, Limit: c.opts.PageSize + 1})
		if err != nil {
			return 0, err
		}
		if len(ms) == 0 {
			v.Problem = fmt.Sprintf("key %q has no parked messages: nothing to requeue", v.Target)
			return http.StatusConflict, nil
		}
		if len(ms) > c.opts.PageSize {
			ms, v.More = ms[:c.opts.PageSize], true
		}
		v.Messages = ms
	case "error":
		groups, err := c.ob.ParkedErrors(ctx)
		if err != nil {
			return 0, err
		}
		for i := range groups {
			if groups[i].Fingerprint == v.Target {
				v.Group = &groups[i]
			}
		}
		if v.Group == nil {
			v.Problem = "no parked message has this error: nothing to requeue (the group was requeued already, or the link is stale)"
			return http.StatusConflict, nil
		}
	}
	return http.StatusOK, nil
}

// notParked explains why a message cannot be requeued, from what Lookup
// returned for it, and returns the status to report it with: 404 for an
// unknown id, 409 for a message that is not parked.
func notParked(v *requeueView, rec outbox.Record, err error) int {
	switch {
	case errors.Is(err, outbox.ErrUnknownMessage):
		v.Problem = fmt.Sprintf("no outbox message has id %q: it was never enqueued, or it was delivered and deleted; nothing was requeued", v.Target)
		return http.StatusNotFound
	case err != nil:
		v.Problem = fmt.Sprintf("message %q is not parked, and reading its state failed: %v", v.Target, err)
	case rec.State == outbox.StateDelivered:
		v.Problem = fmt.Sprintf("message %q was delivered at %s: there is nothing to requeue", v.Target, when(rec.DeliveredAt))
	default:
		v.Problem = fmt.Sprintf("message %q is %s, not parked: it was requeued already, or never parked", v.Target, rec.State)
	}
	return http.StatusConflict
}
