package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

var discardLogger = slog.New(slog.DiscardHandler)

func migrateFlags(c *cli) {
	c.fs.BoolVar(&c.print, "print", false, "print the migrations' SQL for the dialect and prefix instead of applying them")
}

func migrate(ctx context.Context, c *cli) error {
	if err := c.wantArgs(0, ""); err != nil {
		return err
	}
	if c.print {
		// Rendering needs the dialect only: no connection, no file.
		st, err := c.store(ctx)
		if err != nil {
			return err
		}
		ms, err := st.Migrations()
		if err != nil {
			return err
		}
		if c.json {
			type out struct {
				Version int    `json:"version"`
				Name    string `json:"name"`
				SQL     string `json:"sql"`
			}
			list := make([]out, len(ms))
			for i, m := range ms {
				list[i] = out{m.Version, m.Name, m.SQL}
			}
			return c.printJSON(list)
		}
		fsys, err := st.MigrationFS(store.Plain)
		if err != nil {
			return err
		}
		return fs.WalkDir(fsys, ".", func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, path)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "-- %s\n%s\n", path, strings.TrimRight(string(b), "\n"))
			return nil
		})
	}
	st, err := c.store(ctx)
	if err != nil {
		return err
	}
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	ms, err := st.Migrations()
	if err != nil {
		return err
	}
	version := ms[len(ms)-1].Version
	if c.json {
		return c.printJSON(map[string]any{"migrated": true, "version": version})
	}
	fmt.Fprintf(c.stdout, "migrated: keel's tables (prefix %q) are at version %d\n", st.TablePrefix(), version)
	return nil
}

func stats(ctx context.Context, c *cli) error {
	if err := c.wantArgs(0, ""); err != nil {
		return err
	}
	ob, err := c.outbox(ctx)
	if err != nil {
		return err
	}
	s, err := ob.Stats(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]any{
			"pending":                s.Pending,
			"retrying":               s.Retrying,
			"parked":                 s.Parked,
			"scheduled":              s.Scheduled,
			"oldest_pending_seconds": s.OldestPending.Seconds(),
		})
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "pending\t%d\n", s.Pending)
	fmt.Fprintf(w, "retrying\t%d\t(of the pending, failed at least once)\n", s.Retrying)
	fmt.Fprintf(w, "parked\t%d\n", s.Parked)
	fmt.Fprintf(w, "scheduled\t%d\t(waiting for their time, not yet pending)\n", s.Scheduled)
	oldest := "-"
	if s.Pending > 0 {
		oldest = s.OldestPending.Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "oldest pending\t%s\n", oldest)
	return w.Flush()
}

func parkedListFlags(c *cli) {
	c.fs.StringVar(&c.key, "key", "", "list only this partition key's parked messages")
	c.fs.IntVar(&c.limit, "limit", 100, "list at most this many messages")
	c.fs.Int64Var(&c.after, "after", 0, "list messages after this outbox position (the seq of the previous page's last row)")
}

// messageJSON is a message as the JSON output shows it. The payload is
// embedded as JSON when it is JSON, and given in base64 otherwise, so its
// bytes come out exactly.
type messageJSON struct {
	Seq              int64             `json:"seq"`
	ID               string            `json:"id"`
	State            string            `json:"state,omitempty"`
	Topic            string            `json:"topic,omitempty"`
	Key              string            `json:"key"`
	Name             string            `json:"name"`
	AggregateType    string            `json:"aggregate_type,omitempty"`
	AggregateID      string            `json:"aggregate_id,omitempty"`
	AggregateVersion int64             `json:"aggregate_version,omitempty"`
	CorrelationID    string            `json:"correlation_id,omitempty"`
	CausationID      string            `json:"causation_id,omitempty"`
	Headers          map[string]string `json:"headers,omitempty"`
	Payload          json.RawMessage   `json:"payload,omitempty"`
	PayloadBase64    []byte            `json:"payload_base64,omitempty"`
	Attempts         int               `json:"attempts"`
	LastError        string            `json:"last_error,omitempty"`
	OccurredAt       *time.Time        `json:"occurred_at,omitempty"`
	EnqueuedAt       *time.Time        `json:"enqueued_at,omitempty"`
	ParkedAt         *time.Time        `json:"parked_at,omitempty"`
	NextAttemptAt    *time.Time        `json:"next_attempt_at,omitempty"`
	DeliveredAt      *time.Time        `json:"delivered_at,omitempty"`
}

func toJSON(m outbox.Message) messageJSON {
	out := messageJSON{
		Seq: m.Seq, ID: m.ID, Topic: m.Topic, Key: m.Key, Name: m.Name,
		AggregateType: m.AggregateType, AggregateID: m.AggregateID, AggregateVersion: m.AggregateVersion,
		CorrelationID: m.CorrelationID, CausationID: m.CausationID, Headers: m.Headers, Attempts: m.Attempts,
		OccurredAt: timePtr(m.OccurredAt), EnqueuedAt: timePtr(m.EnqueuedAt),
	}
	if json.Valid(m.Payload) {
		out.Payload = m.Payload
	} else {
		out.PayloadBase64 = m.Payload
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func parkedList(ctx context.Context, c *cli) error {
	if err := c.wantArgs(0, ""); err != nil {
		return err
	}
	if c.limit <= 0 {
		return usagef("--limit is %d; pass a positive number", c.limit)
	}
	ob, err := c.outbox(ctx)
	if err != nil {
		return err
	}
	list, err := ob.Parked(ctx, outbox.ParkedQuery{Key: c.key, AfterSeq: c.after, Limit: c.limit})
	if err != nil {
		return err
	}
	if c.json {
		out := make([]messageJSON, len(list))
		for i, p := range list {
			out[i] = toJSON(p.Message)
			out[i].State, out[i].LastError, out[i].ParkedAt = "parked", p.LastError, timePtr(p.ParkedAt)
		}
		return c.printJSON(out)
	}
	if len(list) == 0 {
		if c.key != "" {
			fmt.Fprintf(c.stdout, "no parked messages with key %s\n", strconv.Quote(c.key))
		} else {
			fmt.Fprintln(c.stdout, "no parked messages")
		}
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SEQ\tID\tKEY\tNAME\tATTEMPTS\tPARKED\tLAST ERROR")
	for _, p := range list {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Seq, cell(p.ID, 40), cell(p.Key, 30), cell(p.Name, 30),
			p.Attempts, p.ParkedAt.Local().Format(time.DateTime), cell(p.LastError, 60))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(list) == c.limit {
		fmt.Fprintf(c.stdout, "more may follow: add --after %d for the next page\n", list[len(list)-1].Seq)
	}
	return nil
}

// cell makes a value fit one table cell: control characters escaped, cut
// to n runes with an ellipsis. Only the display is shortened; --json and
// "parked show" print values whole.
func cell(s string, n int) string {
	q := escape(s)
	if utf8.RuneCountInString(q) <= n {
		return q
	}
	r := []rune(q)
	return string(r[:n-1]) + "…"
}

// escape writes control characters and invalid UTF-8 of s as Go escapes,
// so that a value cannot break the output's lines or the terminal.
func escape(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func parkedShow(ctx context.Context, c *cli) error {
	if err := c.wantArgs(1, "the message ID"); err != nil {
		return err
	}
	ob, err := c.outbox(ctx)
	if err != nil {
		return err
	}
	r, err := ob.Lookup(ctx, c.args[0])
	if err != nil {
		return err
	}
	if c.json {
		out := toJSON(r.Message)
		out.State, out.LastError, out.DeliveredAt = r.State.String(), r.LastError, timePtr(r.DeliveredAt)
		if r.State == outbox.StateParked {
			out.ParkedAt = timePtr(r.NextAttemptAt)
		} else {
			out.NextAttemptAt = timePtr(r.NextAttemptAt)
		}
		return c.printJSON(out)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s\t%s\n", k, v)
		}
	}
	row("id", strconv.Quote(r.ID))
	row("state", r.State.String())
	row("seq", strconv.FormatInt(r.Seq, 10))
	row("key", strconv.Quote(r.Key))
	row("name", r.Name)
	row("topic", r.Topic)
	if r.AggregateType != "" {
		row("aggregate", fmt.Sprintf("%s %s v%d", r.AggregateType, strconv.Quote(r.AggregateID), r.AggregateVersion))
	}
	row("correlation id", r.CorrelationID)
	row("causation id", r.CausationID)
	row("attempts", strconv.Itoa(r.Attempts))
	row("occurred", formatTime(r.OccurredAt))
	row("enqueued", formatTime(r.EnqueuedAt))
	switch r.State {
	case outbox.StateParked:
		row("parked", formatTime(r.NextAttemptAt))
	case outbox.StatePending:
		row("next attempt", formatTime(r.NextAttemptAt))
	case outbox.StateDelivered:
		row("delivered", formatTime(r.DeliveredAt))
	}
	row("last error", escape(r.LastError))
	keys := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		row("header "+k, strconv.Quote(r.Headers[k]))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "payload (%d bytes):\n%s\n", len(r.Payload), showPayload(r.Payload))
	return nil
}

// maxShownPayload caps the payload "parked show" prints; --json prints it
// whole.
const maxShownPayload = 64 << 10

// showPayload renders a payload for reading: indented when it is JSON,
// quoted when it is not valid UTF-8 text, and cut at maxShownPayload.
func showPayload(p []byte) string {
	cut := ""
	if len(p) > maxShownPayload {
		cut = fmt.Sprintf("\n… %d more bytes; use --json for the whole payload", len(p)-maxShownPayload)
	}
	if json.Valid(p) {
		var b strings.Builder
		if err := indentJSON(&b, p); err == nil {
			s := b.String()
			if len(s) > maxShownPayload {
				s = s[:maxShownPayload]
			}
			return s + cut
		}
	}
	if len(p) > maxShownPayload {
		p = p[:maxShownPayload]
	}
	if utf8.Valid(p) {
		return string(p) + cut
	}
	return strconv.Quote(string(p)) + cut
}

func indentJSON(b *strings.Builder, p []byte) error {
	var buf json.RawMessage
	if err := json.Unmarshal(p, &buf); err != nil {
		return err
	}
	out, err := json.MarshalIndent(buf, "", "  ")
	if err != nil {
		return err
	}
	b.Write(out)
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano) + " (" + since(t) + ")"
}

func since(t time.Time) string {
	d := time.Since(t)
	if d < 0 {
		return "in " + (-d).Round(time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String() + " ago"
}

func requeueFlags(c *cli) {
	c.fs.StringVar(&c.key, "key", "", "requeue every parked message of this partition key, in order")
}

func parkedRequeue(ctx context.Context, c *cli) error {
	if c.key != "" {
		if err := c.wantArgs(0, ""); err != nil {
			return usagef("pass either a message ID or --key, not both")
		}
	} else if err := c.wantArgs(1, "the message ID (or --key K for a whole key)"); err != nil {
		return err
	}
	ob, err := c.outbox(ctx)
	if err != nil {
		return err
	}
	if c.key != "" {
		n, err := ob.RequeueKey(ctx, c.key)
		if err != nil {
			return err
		}
		if c.json {
			if err := c.printJSON(map[string]any{"key": c.key, "requeued": n}); err != nil {
				return err
			}
		} else if n > 0 {
			fmt.Fprintf(c.stdout, "requeued %d parked message(s) of key %s; relays deliver them in order\n", n, strconv.Quote(c.key))
		}
		if n == 0 {
			return fmt.Errorf("no parked messages with key %s; 'keel parked list' shows what is parked", strconv.Quote(c.key))
		}
		return nil
	}
	id := c.args[0]
	if err := ob.Requeue(ctx, id); err != nil {
		if !errors.Is(err, outbox.ErrNotParked) {
			return err
		}
		// Say what the message is instead, if it exists.
		r, lerr := ob.Lookup(ctx, id)
		switch {
		case errors.Is(lerr, outbox.ErrUnknownMessage):
			return fmt.Errorf("no outbox message with id %s (delivered messages are deleted unless the relay keeps them); 'keel parked list' shows what is parked", strconv.Quote(id))
		case lerr != nil:
			return lerr
		}
		return fmt.Errorf("message %s is %s, not parked; only parked messages can be requeued", strconv.Quote(id), r.State)
	}
	if c.json {
		return c.printJSON(map[string]any{"id": id, "requeued": 1})
	}
	fmt.Fprintf(c.stdout, "requeued %s\n", strconv.Quote(id))
	return nil
}

func inboxShow(ctx context.Context, c *cli) error {
	if err := c.wantArgs(1, "the message ID"); err != nil {
		return err
	}
	st, err := c.store(ctx)
	if err != nil {
		return err
	}
	id := c.args[0]
	ps, err := dispatch.ProcessedBy(ctx, st, id)
	if err != nil {
		return err
	}
	ob, err := outbox.New(st)
	if err != nil {
		return err
	}
	state := "not in the outbox"
	r, err := ob.Lookup(ctx, id)
	switch {
	case err == nil:
		state = r.State.String()
	case !errors.Is(err, outbox.ErrUnknownMessage):
		return err
	}
	if len(ps) == 0 && state == "not in the outbox" {
		return fmt.Errorf("no handler has applied a message with id %s, and the outbox does not hold it; check the id (inbox rows older than the prune window are gone)", strconv.Quote(id))
	}
	if c.json {
		type processed struct {
			Handler string    `json:"handler"`
			At      time.Time `json:"processed_at"`
		}
		list := make([]processed, len(ps))
		for i, p := range ps {
			list[i] = processed{p.Handler, p.At}
		}
		return c.printJSON(map[string]any{"id": id, "outbox_state": state, "processed_by": list})
	}
	fmt.Fprintf(c.stdout, "message %s: %s\n", strconv.Quote(id), state)
	if len(ps) == 0 {
		fmt.Fprintln(c.stdout, "no handler has applied it yet")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HANDLER\tAPPLIED")
	for _, p := range ps {
		fmt.Fprintf(w, "%s\t%s\n", p.Handler, formatTime(p.At))
	}
	return w.Flush()
}

func leases(ctx context.Context, c *cli) error {
	if err := c.wantArgs(0, ""); err != nil {
		return err
	}
	ob, err := c.outbox(ctx)
	if err != nil {
		return err
	}
	ls, err := ob.Leases(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	if c.json {
		type lease struct {
			Partition int        `json:"partition"`
			Owner     string     `json:"owner,omitempty"`
			Held      bool       `json:"held"`
			ExpiresAt *time.Time `json:"expires_at,omitempty"`
		}
		out := make([]lease, len(ls))
		for i, l := range ls {
			out[i] = lease{l.Partition, l.Owner, l.Held(now), nil}
			if l.Owner != "" {
				out[i].ExpiresAt = timePtr(l.ExpiresAt)
			}
		}
		return c.printJSON(out)
	}
	type holder struct {
		parts  []int
		expiry time.Time
	}
	held := map[string]*holder{}
	var owners []string
	free := 0
	for _, l := range ls {
		if !l.Held(now) {
			free++
			continue
		}
		h := held[l.Owner]
		if h == nil {
			h = &holder{expiry: l.ExpiresAt}
			held[l.Owner] = h
			owners = append(owners, l.Owner)
		}
		h.parts = append(h.parts, l.Partition)
		if l.ExpiresAt.Before(h.expiry) {
			h.expiry = l.ExpiresAt
		}
	}
	slices.Sort(owners)
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RELAY\tPARTITIONS\tCOUNT\tEXPIRES")
	for _, o := range owners {
		h := held[o]
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", cell(o, 40), ranges(h.parts), len(h.parts), since(h.expiry))
	}
	if free > 0 {
		fmt.Fprintf(w, "(none)\t\t%d\tfree or expired: no relay delivers them\n", free)
	}
	return w.Flush()
}

// ranges writes sorted partition numbers as "0-3,8,10-11".
func ranges(ps []int) string {
	var b strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ps[i], ps[j])
		} else {
			b.WriteString(strconv.Itoa(ps[i]))
		}
		i = j + 1
	}
	return b.String()
}
