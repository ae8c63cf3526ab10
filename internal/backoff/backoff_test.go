package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayGrowsAndCaps(t *testing.T) {
	p := Policy{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for attempt, ceiling := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 9: 80, 100: 80} {
		ceiling *= time.Millisecond
		for range 200 {
			d := p.Delay(attempt)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("Equal attempt %d: %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	full := Policy{Base: time.Millisecond, Max: 4 * time.Millisecond, Jitter: Full}
	sawSmall := false
	for range 1000 {
		d := full.Delay(3)
		if d < 0 || d > 4*time.Millisecond {
			t.Fatalf("Full delay %v outside [0, 4ms]", d)
		}
		sawSmall = sawSmall || d < time.Millisecond
	}
	if !sawSmall {
		t.Error("Full jitter never chose a delay below a quarter of the ceiling in 1000 tries")
	}
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy delay = %v, want 0", d)
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
}
