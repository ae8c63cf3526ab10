package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/keel-go/keel/outbox"
)

// metrics counts what the relay reports and serves it, with the outbox's
// counts read at each scrape, in the Prometheus text exposition format
// (version 0.0.4). The format is a few lines of text per metric, so it is
// written here rather than through a client library and its dependencies.
type metrics struct {
	mu         sync.Mutex
	batches    uint64
	outcomes   map[string]uint64 // delivered, failed, parked, held, unrecorded
	durSum     float64
	lastLag    float64
	partitions func() int
	stats      func(context.Context) (outbox.Stats, error)
}

var outcomes = []string{"delivered", "failed", "parked", "held", "unrecorded"}

func newMetrics() *metrics {
	return &metrics{outcomes: map[string]uint64{}}
}

// ObserveBatch implements outbox.Observer.
func (m *metrics) ObserveBatch(r outbox.BatchReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	m.outcomes["delivered"] += uint64(r.Delivered)
	m.outcomes["failed"] += uint64(r.Failed)
	m.outcomes["parked"] += uint64(r.Parked)
	m.outcomes["held"] += uint64(r.Held)
	m.outcomes["unrecorded"] += uint64(r.Unrecorded)
	m.durSum += r.Duration.Seconds()
	m.lastLag = r.Lag.Seconds()
}

// ServeHTTP writes the metrics. When the outbox cannot be read, its gauges
// are left out and keel_outbox_up is 0, so an alert can tell a stale scrape
// from an empty outbox.
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s, err := m.stats(ctx)

	var b bytes.Buffer
	m.mu.Lock()
	metric(&b, "keel_relay_batches_total", "counter", "Batches the relay published.")
	fmt.Fprintf(&b, "keel_relay_batches_total %d\n", m.batches)
	metric(&b, "keel_relay_messages_total", "counter", "Messages the relay handled, by outcome: delivered, failed (retried later), parked, held (behind a failed message of their key), unrecorded (a failure that could not be written).")
	for _, o := range outcomes {
		fmt.Fprintf(&b, "keel_relay_messages_total{outcome=%q} %d\n", o, m.outcomes[o])
	}
	metric(&b, "keel_relay_batch_duration_seconds_total", "counter", "Time spent on batches, from claim to settle; divide its rate by the batches' rate for the mean.")
	fmt.Fprintf(&b, "keel_relay_batch_duration_seconds_total %g\n", m.durSum)
	metric(&b, "keel_relay_lag_seconds", "gauge", "Age of the oldest message of the last batch when it was published.")
	fmt.Fprintf(&b, "keel_relay_lag_seconds %g\n", m.lastLag)
	m.mu.Unlock()
	metric(&b, "keel_relay_partitions", "gauge", "Partitions this relay leases.")
	fmt.Fprintf(&b, "keel_relay_partitions %d\n", m.partitions())

	metric(&b, "keel_outbox_up", "gauge", "1 if the outbox could be read for this scrape, 0 if not.")
	if err != nil {
		fmt.Fprintf(&b, "keel_outbox_up 0\n")
	} else {
		fmt.Fprintf(&b, "keel_outbox_up 1\n")
		metric(&b, "keel_outbox_messages", "gauge", "Outbox rows by state: pending (including retrying), retrying, parked.")
		fmt.Fprintf(&b, "keel_outbox_messages{state=\"pending\"} %d\n", s.Pending)
		fmt.Fprintf(&b, "keel_outbox_messages{state=\"retrying\"} %d\n", s.Retrying)
		fmt.Fprintf(&b, "keel_outbox_messages{state=\"parked\"} %d\n", s.Parked)
		metric(&b, "keel_outbox_oldest_pending_seconds", "gauge", "Age of the oldest pending row; 0 when none is pending.")
		fmt.Fprintf(&b, "keel_outbox_oldest_pending_seconds %g\n", s.OldestPending.Seconds())
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

func metric(b *bytes.Buffer, name, typ, help string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}
