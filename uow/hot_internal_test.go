package uow

import (
	"fmt"
	"testing"
	"time"
)

// TestHotSetBounded checks that the hot set keeps at most maxHot
// aggregates, that the latest conflict always gets in, and that cold
// entries are what goes first.
func TestHotSetBounded(t *testing.T) {
	h := hotSet{window: time.Hour}
	for i := range maxHot + 50 {
		h.mark(aggregateKey{"account", fmt.Sprint(i)})
		if n := len(h.entries); n > maxHot || h.n.Load() != int64(n) {
			t.Fatalf("after %d marks the set holds %d entries (counted %d), at most %d", i+1, n, h.n.Load(), maxHot)
		}
	}
	if last := (aggregateKey{"account", fmt.Sprint(maxHot + 49)}); !h.has(last) {
		t.Fatal("the latest conflict was not remembered")
	}

	h = hotSet{window: time.Hour}
	for i := range maxHot {
		h.mark(aggregateKey{"account", fmt.Sprint(i)})
	}
	cold := aggregateKey{"account", "0"}
	h.entries[cold].until = time.Now().Add(-2 * time.Hour)
	h.mark(aggregateKey{"account", "new"})
	if _, ok := h.entries[cold]; ok {
		t.Error("marking into a full set kept a cold entry")
	}
	if n := len(h.entries); n != maxHot {
		t.Errorf("set holds %d entries, want %d (one cold out, one in)", n, maxHot)
	}
}

// TestHotSetProbe walks an entry through its life: hot, then one probe
// while the others keep locking, then hot again after the probe's
// conflict, or cold after a window without one.
func TestHotSetProbe(t *testing.T) {
	const window = time.Hour
	k := aggregateKey{"account", "a-1"}
	h := hotSet{window: window}
	if h.has(k) {
		t.Fatal("hot before any conflict")
	}
	h.mark(k)
	if !h.has(k) || !h.has(k) {
		t.Fatal("not hot within the window")
	}
	h.entries[k].until = time.Now().Add(-time.Second) // the window has passed
	if h.has(k) {
		t.Fatal("the first read after the window locked; it should probe")
	}
	if !h.has(k) || !h.has(k) {
		t.Fatal("others did not lock while the probe was out")
	}
	h.mark(k) // the probe conflicted
	if e := h.entries[k]; !e.probe.IsZero() || !h.has(k) {
		t.Fatal("a conflicting probe did not make the aggregate hot again")
	}
	h.entries[k].until = time.Now().Add(-time.Second)
	if h.has(k) {
		t.Fatal("second window: the first read should probe")
	}
	h.entries[k].probe = time.Now().Add(-window - time.Second) // no conflict since
	if h.has(k) {
		t.Fatal("still locking a window after a probe that did not conflict")
	}
	if _, ok := h.entries[k]; ok || h.n.Load() != 0 {
		t.Fatalf("a cold aggregate is still remembered (%d entries)", h.n.Load())
	}
}
