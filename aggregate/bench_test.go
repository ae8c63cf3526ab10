package aggregate_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
)

// BenchmarkDecode compares decoding an old payload through a two-step
// upcaster chain (v1 to v2 to v3) with plain decodes, beside the
// hand-written baselines: json.Unmarshal of the same v1 bytes into the v1
// type (the decode the chain replaces), and of the v3 bytes into the
// current type.
//
//	go test ./aggregate -run '^$' -bench Decode -count 6
func BenchmarkDecode(b *testing.B) {
	v3payload, err := json.Marshal(want)
	if err != nil {
		b.Fatal(err)
	}
	typed := aggregate.NewRegistry().MustRegister(Placed{})
	aggregate.MustUpcast(typed, "order.placed", 1, v1to2)
	aggregate.MustUpcast(typed, "order.placed", 2, v2to3)
	raw := aggregate.NewRegistry().MustRegister(Placed{})
	if err := raw.UpcastJSON("order.placed", 1, rawV1to2); err != nil {
		b.Fatal(err)
	}
	if err := raw.UpcastJSON("order.placed", 2, rawV2to3); err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B, e aggregate.Event, err error) {
		if err != nil || e != aggregate.Event(want) {
			b.Fatalf("decoded %v, %v", e, err)
		}
	}

	b.Run("baseline-unmarshal-v1", func(b *testing.B) {
		for b.Loop() {
			var p placedV1
			if err := json.Unmarshal(v1payload, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-unmarshal-v3", func(b *testing.B) {
		for b.Loop() {
			var p Placed
			if err := json.Unmarshal(v3payload, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plain-v3", func(b *testing.B) {
		for b.Loop() {
			e, err := typed.DecodeVersion("order.placed", 3, v3payload)
			check(b, e, err)
		}
	})
	b.Run("typed-chain-v1", func(b *testing.B) {
		for b.Loop() {
			e, err := typed.DecodeVersion("order.placed", 1, v1payload)
			check(b, e, err)
		}
	})
	b.Run("raw-chain-v1", func(b *testing.B) {
		for b.Loop() {
			e, err := raw.DecodeVersion("order.placed", 1, v1payload)
			check(b, e, err)
		}
	})
	// The ratios, measured in the same iterations so that the noise of a
	// shared machine falls on both sides: the chain against json.Unmarshal
	// of the same v1 bytes, and against a plain decode of the v3 payload.
	b.Run("typed-chain-ratio", func(b *testing.B) {
		var base, plain, chain time.Duration
		for b.Loop() {
			t0 := time.Now()
			var p placedV1
			if err := json.Unmarshal(v1payload, &p); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			e, err := typed.DecodeVersion("order.placed", 3, v3payload)
			t2 := time.Now()
			check(b, e, err)
			t3 := time.Now()
			e, err = typed.DecodeVersion("order.placed", 1, v1payload)
			t4 := time.Now()
			check(b, e, err)
			base += t1.Sub(t0)
			plain += t2.Sub(t1)
			chain += t4.Sub(t3)
		}
		b.ReportMetric(float64(chain)/float64(base), "x-unmarshal-v1")
		b.ReportMetric(float64(chain)/float64(plain), "x-plain-v3")
	})
}
