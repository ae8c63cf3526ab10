package console

import (
	"strings"
	"testing"
	"time"

	"github.com/keel-go/keel/outbox"
)

func TestDeliveredAcrossRelays(t *testing.T) {
	t0 := time.Now()
	a := sample{at: t0, delivered: map[string]int64{"r1": 100, "r2": 50}}
	// r1 delivered 30 more, r2 stopped (its count is gone), r3 started and
	// delivered 7.
	b := sample{at: t0.Add(10 * time.Second), delivered: map[string]int64{"r1": 130, "r3": 7}}
	if got := delivered(a, b); got != 37 {
		t.Fatalf("delivered = %d, want 37", got)
	}
	// A relay whose count went down restarted under the same id: no
	// negative rate.
	c := sample{at: t0.Add(20 * time.Second), delivered: map[string]int64{"r1": 5}}
	if got := delivered(b, c); got != 0 {
		t.Fatalf("delivered after a restart = %d, want 0", got)
	}
}

func TestHistoryKeepsSpan(t *testing.T) {
	h := newHistory(time.Minute, time.Second)
	t0 := time.Now()
	for i := range 200 {
		at := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		if h.due(at) {
			h.add(sample{at: at})
		}
	}
	s := h.snapshot()
	if len(s) < 59 || len(s) > 62 {
		t.Fatalf("kept %d samples of 1s over a minute", len(s))
	}
	if span := s[len(s)-1].at.Sub(s[0].at); span > time.Minute+time.Second {
		t.Fatalf("kept %v of history, want a minute", span)
	}
}

func TestChartSmoothsHeartbeats(t *testing.T) {
	// Samples every second; the relay reports 500 deliveries every 5s
	// heartbeat: a steady 100 msgs/s.
	t0 := time.Now()
	var samples []sample
	for i := range 60 {
		n := int64(i/5) * 500
		samples = append(samples, sample{
			at:        t0.Add(time.Duration(i) * time.Second),
			stats:     outbox.Stats{Pending: int64(i)},
			delivered: map[string]int64{"r1": n},
		})
	}
	ch := drawChart(samples, 10*time.Minute)
	if ch.Span != 59*time.Second {
		t.Fatalf("span %v, want the 59s the samples cover", ch.Span)
	}
	if ch.Pending.Last != 59 || ch.Pending.Max != 59 {
		t.Fatalf("pending series: last %v, max %v", ch.Pending.Last, ch.Pending.Max)
	}
	// Past the first window, every point is within a heartbeat of 100/s.
	if ch.Delivered.Max > 150 || ch.Delivered.Last < 50 {
		t.Fatalf("delivery rate swings: max %v, last %v, want about 100", ch.Delivered.Max, ch.Delivered.Last)
	}
	if n := len(strings.Fields(ch.Pending.Points)); n != 60 {
		t.Fatalf("%d pending points, want 60", n)
	}
}
