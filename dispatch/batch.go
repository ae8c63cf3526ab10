package dispatch

import (
	"context"
	"fmt"
	"reflect"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

type messagesKey struct{}

// MessagesFrom returns the messages a handler registered with HandleBatch
// is handling, in the order of the events it was given: for their ids,
// headers and partition keys. In a handler registered with Handle it
// returns the one message MessageFrom returns.
func MessagesFrom(ctx context.Context) []outbox.Message {
	if ms, ok := ctx.Value(messagesKey{}).([]outbox.Message); ok {
		return ms
	}
	if m, ok := MessageFrom(ctx); ok {
		return []outbox.Message{m}
	}
	return nil
}

// HandleBatch registers fn to run, after commit, on the messages named like
// E that the router delivers, many at a time: every such message of a group
// that DeliverBatch (and so a Bus) delivers in one transaction, in batch
// order, in one unit of work. It suits handlers that write their effects in
// one statement for many events. MessagesFrom gives the messages, in the
// order of es.
//
// The inbox still has a row per handler and message, claimed with the
// others of the group, so a redelivery passes fn only the messages it has
// not taken effect for. fn succeeds or fails as a whole: when it fails, its
// unit rolls back to its savepoint and every message it was given fails for
// it, the first of each partition key with fn's error and the rest of the
// key held back. A version conflict runs fn again on the same messages.
// Since fn takes a group's messages at once, a key's later message can take
// effect for fn while an earlier one still fails in another handler; each
// handler still sees a key's messages in order. Messages delivered one at a
// time (Deliver, or again one by one after a group failed as a whole) reach
// fn one per call.
//
// Events fn records through tx carry no causation of their own: record them
// with aggregate.Root.RecordWith to name the message that caused each.
//
// Names, registration and panics are as for Handle.
func HandleBatch[E aggregate.Event](r *Router, name string, fn func(ctx context.Context, tx *uow.Tx, es []E) error) {
	if r == nil {
		panic("keel: dispatch.HandleBatch: nil *Router")
	}
	if fn == nil {
		panic(fmt.Sprintf("keel: dispatch.HandleBatch: nil function for handler %q", name))
	}
	event, want := eventName[E](name), reflect.TypeFor[E]()
	batch := func(ctx context.Context, tx *uow.Tx, evs []aggregate.Event) error {
		es := make([]E, len(evs))
		for i, ev := range evs {
			e, ok := ev.(E)
			if !ok {
				return wrongType(name, event, want, ev)
			}
			es[i] = e
		}
		return fn(ctx, tx, es)
	}
	register[E](r, name, event, func(ctx context.Context, tx *uow.Tx, ev aggregate.Event) error {
		return batch(context.WithValue(ctx, messagesKey{}, MessagesFrom(ctx)), tx, []aggregate.Event{ev})
	}, batch)
}

// batchJob is one batch handler's run on the messages of a group.
type batchJob struct {
	h     *handler
	ds    []*delivery
	pairs []int // index of each delivery's inbox row in the group's claim
}

// runBatchHandlers runs each batch handler once on the group's messages it
// claimed, in batch order, in a unit of work of its own, and records the
// outcome on their inbox rows.
func (r *Router) runBatchHandlers(ctx context.Context, bt *uow.Batch, ds []delivery, pairs []inboxPair) error {
	var jobs []*batchJob
	for k := range ds {
		d := &ds[k]
		if d.err != nil {
			continue
		}
		for j, h := range d.hs {
			if h.batch == nil || j >= len(d.pairs) || !pairs[d.pairs[j]].claimed {
				continue
			}
			var job *batchJob
			for _, b := range jobs {
				if b.h == h {
					job = b
				}
			}
			if job == nil {
				job = &batchJob{h: h}
				jobs = append(jobs, job)
			}
			job.ds, job.pairs = append(job.ds, d), append(job.pairs, d.pairs[j])
		}
	}
	for _, job := range jobs {
		msgs := make([]outbox.Message, len(job.ds))
		evs := make([]aggregate.Event, len(job.ds))
		for i, d := range job.ds {
			msgs[i] = *d.m
			ev, err := r.decode(d.m)
			if err != nil {
				return err // cannot happen: the same payload decoded before
			}
			evs[i] = ev
		}
		h := job.h
		err := r.guard(context.WithValue(ctx, messagesKey{}, msgs), h, job.ds[0].m, func(ctx context.Context) error {
			return bt.Do(ctx, func(ctx context.Context, tx *uow.Tx) error { return h.batch(ctx, tx, evs) })
		})
		for _, p := range job.pairs {
			if err != nil {
				pairs[p].err = err
			} else {
				pairs[p].done = true
			}
		}
		if err := bt.Err(); err != nil {
			return err
		}
	}
	return nil
}
