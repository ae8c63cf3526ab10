package console

import (
	"strconv"
	"strings"
	"time"
)

// rateWindow is how far back each point of the delivery chart measures its
// rate. Relays report their counts with each heartbeat (every 5s by
// default), so a rate between neighbouring samples would swing between
// zero and twice the truth.
const rateWindow = 10 * time.Second

// Chart geometry, in SVG user units.
const (
	chartWidth  = 600
	chartHeight = 90
)

// chart is the overview's two small line charts over the history: pending
// messages, and messages delivered per second.
type chart struct {
	Width, Height int
	Span          time.Duration // how far back the x axis reaches
	Pending       series
	Delivered     series
	Samples       int
}

// series is one line: SVG polyline points, and the value at the top of
// its y axis.
type series struct {
	Points string
	Max    float64
	Last   float64
}

// drawChart lays the samples out on the charts: x from the oldest sample
// (at most span ago) to the newest, y from zero to the series' maximum.
func drawChart(samples []sample, span time.Duration) chart {
	ch := chart{Width: chartWidth, Height: chartHeight, Span: span, Samples: len(samples)}
	if len(samples) == 0 {
		return ch
	}
	end := samples[len(samples)-1].at
	start := end.Add(-span)
	if first := samples[0].at; first.After(start) {
		start = first
	}
	if span = end.Sub(start); span <= 0 {
		span = time.Second // one sample: a point at the left edge
	}
	ch.Span = span
	x := func(t time.Time) float64 {
		return float64(t.Sub(start)) / float64(span) * chartWidth
	}
	var pend, deliv []point
	j := 0 // the oldest sample within rateWindow of s
	for _, s := range samples {
		pend = append(pend, point{x(s.at), float64(s.stats.Pending)})
		for s.at.Sub(samples[j].at) > rateWindow {
			j++
		}
		if dt := s.at.Sub(samples[j].at).Seconds(); dt > 0 {
			deliv = append(deliv, point{x(s.at), float64(delivered(samples[j], s)) / dt})
		}
	}
	ch.Pending = plot(pend)
	ch.Delivered = plot(deliv)
	return ch
}

type point struct{ x, v float64 }

// plot scales points to the chart's height, with a maximum of at least 1 so
// that a flat zero line sits on the axis.
func plot(ps []point) series {
	var s series
	s.Max = 1
	for _, p := range ps {
		s.Max = max(s.Max, p.v)
	}
	if len(ps) > 0 {
		s.Last = ps[len(ps)-1].v
	}
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		y := chartHeight - p.v/s.Max*(chartHeight-4) - 2
		b.WriteString(strconv.FormatFloat(max(p.x, 0), 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	s.Points = b.String()
	return s
}
