package uow

import (
	"sync"
	"sync/atomic"
	"time"
)

// aggregateKey names one aggregate.
type aggregateKey struct{ typ, id string }

// maxHot bounds how many aggregates a Runner remembers as hot.
const maxHot = 1024

// hotSet remembers, under Adaptive, the aggregates that lost a version
// conflict recently, so that units read them with a row lock from their
// first attempt.
type hotSet struct {
	window time.Duration
	// n counts the entries, read without the lock so that a Runner whose
	// aggregates never conflicted pays nothing on Get.
	n     atomic.Int64
	mu    sync.RWMutex
	until map[aggregateKey]time.Time
}

// mark makes k hot for the window from now.
func (h *hotSet) mark(k aggregateKey) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.until == nil {
		h.until = make(map[aggregateKey]time.Time)
	}
	if _, ok := h.until[k]; !ok && len(h.until) >= maxHot {
		for old, t := range h.until {
			if now.After(t) {
				delete(h.until, old)
			}
		}
		// Every entry is still hot: the latest conflict matters more
		// than some older one.
		for old := range h.until {
			if len(h.until) < maxHot {
				break
			}
			delete(h.until, old)
		}
	}
	h.until[k] = now.Add(h.window)
	h.n.Store(int64(len(h.until)))
}

// has reports whether k is hot.
func (h *hotSet) has(k aggregateKey) bool {
	if h.n.Load() == 0 {
		return false
	}
	h.mu.RLock()
	until, ok := h.until[k]
	h.mu.RUnlock()
	return ok && time.Now().Before(until)
}
