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
//
// An aggregate is hot for the window after its last conflict. Once that has
// passed, the next unit to read it reads optimistically, as a probe, while
// the others go on locking for one more window: if the probe conflicts,
// the aggregate is hot again, having cost one wasted attempt rather than
// one per writer; if nothing conflicts, it is cold and forgotten.
type hotSet struct {
	window time.Duration
	// n counts the entries, read without the lock so that a Runner whose
	// aggregates never conflicted pays nothing on Get.
	n       atomic.Int64
	mu      sync.RWMutex
	entries map[aggregateKey]*hotEntry
}

type hotEntry struct {
	until time.Time // hot until then
	probe time.Time // when the probe went out, or zero
}

// mark makes k hot for the window from now.
func (h *hotSet) mark(k aggregateKey) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.entries == nil {
		h.entries = make(map[aggregateKey]*hotEntry)
	}
	e, ok := h.entries[k]
	if !ok {
		if len(h.entries) >= maxHot {
			h.evict(now)
		}
		e = new(hotEntry)
		h.entries[k] = e
		h.n.Store(int64(len(h.entries)))
	}
	*e = hotEntry{until: now.Add(h.window)}
}

// evict makes room for one more entry: it forgets the cold entries and, if
// none is, some other, since the latest conflict matters more.
func (h *hotSet) evict(now time.Time) {
	for k, e := range h.entries {
		if h.cold(e, now) {
			delete(h.entries, k)
		}
	}
	for k := range h.entries {
		if len(h.entries) < maxHot {
			break
		}
		delete(h.entries, k)
	}
}

// cold reports whether e has been neither hot nor probing for a window.
func (h *hotSet) cold(e *hotEntry, now time.Time) bool {
	return !now.Before(e.until.Add(h.window)) && (e.probe.IsZero() || !now.Before(e.probe.Add(h.window)))
}

// has reports whether k should be read with a lock.
func (h *hotSet) has(k aggregateKey) bool {
	if h.n.Load() == 0 {
		return false
	}
	now := time.Now()
	h.mu.RLock()
	e, ok := h.entries[k]
	if !ok {
		h.mu.RUnlock()
		return false
	}
	if now.Before(e.until) || !e.probe.IsZero() && now.Before(e.probe.Add(h.window)) {
		// Hot, or the probe is out and the others wait for its outcome.
		h.mu.RUnlock()
		return true
	}
	h.mu.RUnlock()

	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok = h.entries[k]
	switch {
	case !ok:
		return false
	case now.Before(e.until):
		return true // a conflict came in meanwhile
	case e.probe.IsZero():
		e.probe = now // this caller is the probe
		return false
	case now.Before(e.probe.Add(h.window)):
		return true // another caller became the probe meanwhile
	}
	delete(h.entries, k) // the probe did not conflict: cold again
	h.n.Store(int64(len(h.entries)))
	return false
}
