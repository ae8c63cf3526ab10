package console

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/keel-go/keel/outbox"
)

// sample is the outbox at one moment: its counts, and each live relay's
// delivery count.
type sample struct {
	at        time.Time
	stats     outbox.Stats
	delivered map[string]int64 // by relay id
}

// history keeps the samples of the last span, at most one per gap.
type history struct {
	span, gap time.Duration

	mu      sync.Mutex
	samples []sample // oldest first
}

func newHistory(span, gap time.Duration) *history { return &history{span: span, gap: gap} }

// due reports whether a sample taken now would not crowd the last one.
func (h *history) due(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.samples) == 0 || now.Sub(h.samples[len(h.samples)-1].at) >= h.gap
}

// add records s and forgets samples older than the span.
func (h *history) add(s sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.samples); n > 0 && !s.at.After(h.samples[n-1].at) {
		return // a concurrent sample got there first
	}
	h.samples = append(h.samples, s)
	cutoff := s.at.Add(-h.span)
	i := 0
	for i < len(h.samples)-1 && h.samples[i].at.Before(cutoff) {
		i++
	}
	h.samples = slices.Delete(h.samples, 0, i)
}

// snapshot returns a copy of the samples, oldest first.
func (h *history) snapshot() []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.samples)
}

// delivered returns how many messages the relays delivered between two
// samples. A relay that started after a was at zero then; a relay that
// stopped before b took what it delivered since a with it, which the
// count misses.
func delivered(a, b sample) int64 {
	var n int64
	for id, nb := range b.delivered {
		if d := nb - a.delivered[id]; d > 0 {
			n += d
		}
	}
	return n
}

// overview is what the overview page shows.
type overview struct {
	Stats      outbox.Stats
	Rate       float64 // messages delivered per second over the last minute; -1 when unknown
	RateWindow time.Duration
	Relays     []relayRow
	Partitions []partitionCell
	Free       int // partitions no relay holds
	Chart      chart
}

// relayRow is one live relay as the overview shows it.
type relayRow struct {
	outbox.RelayInfo
	Class      string    // the colour of its partitions
	LeaseUntil time.Time // when its leases expire unless renewed
	Rate       float64   // its deliveries per second over the last minute; -1 when unknown
}

// partitionCell is one partition in the overview's lease map.
type partitionCell struct {
	No        int
	Owner     string
	Class     string
	ExpiresAt time.Time
}

// relayClasses are the CSS classes that colour relays' partitions; relays
// beyond them share the last.
const relayClasses = 8

// sample reads the outbox's counts, relays and leases, records a sample in
// the history when one is due (or always, if force), and returns the
// overview.
func (c *Console) sample(ctx context.Context, force bool) (overview, error) {
	var ov overview
	stats, err := c.ob.Stats(ctx)
	if err != nil {
		return ov, err
	}
	relays, err := c.ob.Relays(ctx)
	if err != nil {
		return ov, err
	}
	leases, err := c.ob.Leases(ctx)
	if err != nil {
		return ov, err
	}
	now := time.Now()
	s := sample{at: now, stats: stats, delivered: make(map[string]int64, len(relays))}
	for _, r := range relays {
		s.delivered[r.ID] = r.Delivered
	}
	if force || c.hist.due(now) {
		c.hist.add(s)
	}
	samples := c.hist.snapshot()

	ov.Stats = stats
	ov.Rate, ov.RateWindow = -1, 0
	// The rate over the last minute: from the oldest sample in it to now.
	var from *sample
	for i := range samples {
		if now.Sub(samples[i].at) <= time.Minute && samples[i].at.Before(now) {
			from = &samples[i]
			break
		}
	}
	if from != nil && now.Sub(from.at) >= time.Second {
		ov.RateWindow = now.Sub(from.at)
		ov.Rate = float64(delivered(*from, s)) / ov.RateWindow.Seconds()
	}

	class := map[string]string{}
	for i, r := range relays {
		row := relayRow{RelayInfo: r, Class: relayClass(i), Rate: -1}
		class[r.ID] = row.Class
		if from != nil && ov.RateWindow > 0 {
			row.Rate = float64(max(r.Delivered-from.delivered[r.ID], 0)) / ov.RateWindow.Seconds()
		}
		ov.Relays = append(ov.Relays, row)
	}
	ov.Partitions = make([]partitionCell, len(leases))
	for i, l := range leases {
		cell := partitionCell{No: l.Partition, ExpiresAt: l.ExpiresAt}
		if l.Held(now) {
			cell.Owner, cell.Class = l.Owner, class[l.Owner]
			if cell.Class == "" {
				cell.Class = "relay-other" // a lease whose relay's heartbeat lapsed
			}
			for j := range ov.Relays {
				if ov.Relays[j].ID == l.Owner && l.ExpiresAt.After(ov.Relays[j].LeaseUntil) {
					ov.Relays[j].LeaseUntil = l.ExpiresAt
				}
			}
		} else {
			ov.Free++
		}
		ov.Partitions[i] = cell
	}
	ov.Chart = drawChart(samples, c.opts.History)
	return ov, nil
}

func relayClass(i int) string {
	return "relay-" + string(rune('0'+min(i, relayClasses-1)))
}

func (c *Console) overviewPage(w http.ResponseWriter, r *http.Request) {
	ov, err := c.sample(r.Context(), false)
	if err != nil {
		c.errorPage(w, r, http.StatusInternalServerError, err)
		return
	}
	c.render(w, r, http.StatusOK, "overview", "Overview", ov)
}

// overviewFragment serves the overview's content alone, which the page's
// script fetches every Options.Refresh.
func (c *Console) overviewFragment(w http.ResponseWriter, r *http.Request) {
	ov, err := c.sample(r.Context(), false)
	if err != nil {
		c.errorPage(w, r, http.StatusInternalServerError, err)
		return
	}
	c.fragment(w, r, "overview", "overview-body", ov)
}
