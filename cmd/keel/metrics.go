package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// prometheus serves the metrics keel records through OpenTelemetry (the
// relay's, the outbox's) in the Prometheus text exposition format, version
// 0.0.4, named as OpenTelemetry's Prometheus compatibility rules name
// them: dots become underscores, a unit of seconds adds "_seconds", and
// counters end in "_total". The format is a few lines of text per series,
// so it is written here rather than through the Prometheus client library
// and its dependencies.
type prometheus struct {
	reader *sdkmetric.ManualReader
	log    *slog.Logger
}

func (p prometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rm metricdata.ResourceMetrics
	if err := p.reader.Collect(r.Context(), &rm); err != nil {
		// A failed callback (the database down, say) leaves its series
		// out; the others are still worth serving.
		p.log.Warn("keel: some metrics could not be collected", "err", err)
	}
	var b bytes.Buffer
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			writeMetric(&b, m)
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

func writeMetric(b *bytes.Buffer, m metricdata.Metrics) {
	name := promName(m.Name)
	switch m.Unit {
	case "s":
		name += "_seconds"
	case "By":
		name += "_bytes"
	}
	header := func(typ string) {
		if typ == "counter" {
			name += "_total"
		}
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(m.Description), name, typ)
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		header(sumType(d.IsMonotonic))
		writePoints(b, name, d.DataPoints)
	case metricdata.Sum[float64]:
		header(sumType(d.IsMonotonic))
		writePoints(b, name, d.DataPoints)
	case metricdata.Gauge[int64]:
		header("gauge")
		writePoints(b, name, d.DataPoints)
	case metricdata.Gauge[float64]:
		header("gauge")
		writePoints(b, name, d.DataPoints)
	case metricdata.Histogram[float64]:
		header("histogram")
		points := slices.Clone(d.DataPoints)
		slices.SortFunc(points, func(x, y metricdata.HistogramDataPoint[float64]) int {
			return strings.Compare(labels(x.Attributes, ""), labels(y.Attributes, ""))
		})
		for _, p := range points {
			var cum uint64
			for i, bound := range p.Bounds {
				cum += p.BucketCounts[i]
				fmt.Fprintf(b, "%s_bucket%s %d\n", name, labels(p.Attributes, `le="`+formatFloat(bound)+`"`), cum)
			}
			fmt.Fprintf(b, "%s_bucket%s %d\n", name, labels(p.Attributes, `le="+Inf"`), p.Count)
			fmt.Fprintf(b, "%s_sum%s %s\n", name, labels(p.Attributes, ""), formatFloat(p.Sum))
			fmt.Fprintf(b, "%s_count%s %d\n", name, labels(p.Attributes, ""), p.Count)
		}
	}
}

// sumType is the Prometheus type of a sum: a monotonic one counts up.
func sumType(monotonic bool) string {
	if monotonic {
		return "counter"
	}
	return "gauge"
}

func writePoints[N int64 | float64](b *bytes.Buffer, name string, points []metricdata.DataPoint[N]) {
	points = slices.Clone(points)
	slices.SortFunc(points, func(x, y metricdata.DataPoint[N]) int {
		return strings.Compare(labels(x.Attributes, ""), labels(y.Attributes, ""))
	})
	for _, p := range points {
		fmt.Fprintf(b, "%s%s %s\n", name, labels(p.Attributes, ""), formatFloat(float64(p.Value)))
	}
}

// labels writes attrs (and extra, already formatted) as a label set.
func labels(attrs attribute.Set, extra string) string {
	if attrs.Len() == 0 && extra == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, kv := range attrs.ToSlice() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(promName(string(kv.Key)))
		b.WriteString(`="`)
		b.WriteString(escapeLabel(kv.Value.Emit()))
		b.WriteByte('"')
	}
	if extra != "" {
		if attrs.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extra)
	}
	b.WriteByte('}')
	return b.String()
}

// promName turns an OpenTelemetry name into a Prometheus one: every
// character outside [a-zA-Z0-9_:] becomes an underscore.
func promName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == ':':
			return r
		}
		return '_'
	}, s)
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
