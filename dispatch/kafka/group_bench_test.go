package kafka_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
)

// Run with, for example:
//
//	go test -run '^$' -bench GroupRecovery -benchtime 3x ./dispatch/kafka/
//
// Each iteration is one scenario of the group tests on a fresh SQLite file
// and kfake cluster: member processes of this binary, the broker in the
// benchmark's process, over loopback, on whatever cores the machine has.
// Profiles name the members' group settings: keel's defaults, and
// kafka-go's (session 30s, heartbeat 3s, rebalance 30s, join backoff 5s),
// which the Consumer used before it set its own.

// recoveryProfile is group settings the benchmark compares, with how long
// to wait for the group to recover under them.
type recoveryProfile struct {
	name, settings string
	patience       time.Duration
}

var recoveryProfiles = []recoveryProfile{
	{"keel", "", 90 * time.Second},
	{"kafka-go", "session=30s,heartbeat=3s,rebalance=30s,joinbackoff=5s", 5 * time.Minute},
}

// newProfileGroup is newGroup with p's settings and patience.
func newProfileGroup(tb testing.TB, p recoveryProfile) *group {
	g := newGroup(tb, testdb.SQLiteModernc, p.settings)
	g.patience = p.patience
	return g
}

// BenchmarkGroupRecovery measures how soon a consumer group reads a
// member's partitions again after the member was SIGKILLed (kill), after it
// was stopped with SIGTERM and left (term), and, after a member dies, when
// another one is stopped while the group waits for the dead one
// (term-in-rebalance); and how consumption goes while a member is killed
// and replaced every 0.3 to 1.5s for 12s (churn).
func BenchmarkGroupRecovery(b *testing.B) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, p := range recoveryProfiles {
		b.Run("kill/"+p.name, func(b *testing.B) {
			var first, last time.Duration
			for range b.N {
				f, l := killScenario(b, newProfileGroup(b, p))
				first += f
				last += l
			}
			b.ReportMetric(ms(first)/float64(b.N), "takeover-ms")
			b.ReportMetric(ms(last)/float64(b.N), "last-partition-ms")
		})
		b.Run("term/"+p.name, func(b *testing.B) {
			var left, first, last time.Duration
			for range b.N {
				l, f, la := termScenario(b, newProfileGroup(b, p))
				left += l
				first += f
				last += la
			}
			b.ReportMetric(ms(left)/float64(b.N), "leave-ms")
			b.ReportMetric(ms(first)/float64(b.N), "takeover-ms")
			b.ReportMetric(ms(last)/float64(b.N), "last-partition-ms")
		})
		b.Run("term-in-rebalance/"+p.name, func(b *testing.B) {
			var left time.Duration
			for range b.N {
				left += termInRebalanceScenario(b, newProfileGroup(b, p))
			}
			b.ReportMetric(ms(left)/float64(b.N), "leave-ms")
		})
	}
	for _, p := range append(recoveryProfiles, recoveryProfile{"rebalance=1s", "rebalance=1s", 90 * time.Second}) {
		b.Run("churn/"+p.name, func(b *testing.B) {
			var sum churnStats
			for range b.N {
				s := churnScenario(b, newProfileGroup(b, p), 12*time.Second)
				sum.rate += s.rate
				sum.longest += s.longest
				sum.drain += s.drain
			}
			b.ReportMetric(sum.rate/float64(b.N), "effects/s")
			b.ReportMetric(ms(sum.longest)/float64(b.N), "longest-pause-ms")
			b.ReportMetric(ms(sum.drain)/float64(b.N), "drain-ms")
		})
	}
}

// termInRebalanceScenario starts members a and b, SIGKILLs a, starts c,
// whose join starts a rebalance that waits for a, and stops b with SIGTERM
// once b has rejoined. It returns how long after the signal b's LeaveGroup
// reached the coordinator: Close cannot leave before the rebalance it is
// waiting in ends, by RebalanceTimeout or a's session expiring.
func termInRebalanceScenario(tb testing.TB, g *group) time.Duration {
	tb.Helper()
	a, b := g.start("a"), g.start("b")
	g.owners("a", "b")
	a.signal(tb, syscall.SIGKILL)
	if err := a.wait(tb, 10*time.Second); err == nil {
		tb.Fatal("member a exited cleanly after SIGKILL")
	}
	var cfg kafka.ConsumerConfig
	if err := applySettings(&cfg, g.settings); err != nil {
		tb.Fatal(err)
	}
	hb := cfg.HeartbeatInterval
	if hb == 0 {
		hb = kafka.DefaultHeartbeatInterval
	}
	c := g.start("c")
	client := &kafkago.Client{Addr: kafkago.TCP(g.addr), Timeout: 5 * time.Second}
	var since time.Time
	testdb.Eventually(tb, 30*time.Second, "the group to rebalance for c, with b rejoined", func() bool {
		res, err := client.DescribeGroups(context.Background(), &kafkago.DescribeGroupsRequest{GroupIDs: []string{groupID}})
		if err != nil || len(res.Groups) != 1 || res.Groups[0].GroupState != "PreparingRebalance" {
			since = time.Time{}
			return false
		}
		if since.IsZero() {
			since = time.Now()
		}
		// b learns of the rebalance at its next heartbeat and rejoins.
		return time.Since(since) > hb+500*time.Millisecond
	})
	at := b.signal(tb, syscall.SIGTERM)
	if err := b.wait(tb, g.patience); err != nil {
		tb.Errorf("member b after SIGTERM: %v", err)
	}
	leave, ok := g.leftAfter(at)
	if !ok {
		tb.Fatal("member b exited after SIGTERM without leaving the group")
	}
	n := g.drain()
	tb.Logf("SIGTERM during a rebalance waiting for a dead member: b left %v after the signal; %d messages, each applied once",
		leave.Sub(at).Round(time.Millisecond), n)
	c.stop(tb)
	return leave.Sub(at)
}
