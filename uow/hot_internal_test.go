package uow

import (
	"fmt"
	"testing"
	"time"
)

// TestHotSetBounded checks that the hot set keeps at most maxHot
// aggregates, that the latest conflict always gets in, and that expired
// entries are what goes first.
func TestHotSetBounded(t *testing.T) {
	h := hotSet{window: time.Hour}
	for i := range maxHot + 50 {
		h.mark(aggregateKey{"account", fmt.Sprint(i)})
		if n := len(h.until); n > maxHot {
			t.Fatalf("after %d marks the set holds %d entries, more than %d", i+1, n, maxHot)
		}
	}
	last := aggregateKey{"account", fmt.Sprint(maxHot + 49)}
	if !h.has(last) {
		t.Fatal("the latest conflict was not remembered")
	}

	h = hotSet{window: time.Hour}
	for i := range maxHot {
		h.mark(aggregateKey{"account", fmt.Sprint(i)})
	}
	expired := aggregateKey{"account", "0"}
	h.until[expired] = time.Now().Add(-time.Second)
	if h.has(expired) {
		t.Fatal("an expired entry counts as hot")
	}
	h.mark(aggregateKey{"account", "new"})
	if _, ok := h.until[expired]; ok {
		t.Error("marking into a full set kept an expired entry")
	}
	if n := len(h.until); n != maxHot {
		t.Errorf("set holds %d entries, want %d (one expired out, one in)", n, maxHot)
	}
}
