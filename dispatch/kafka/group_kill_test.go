package kafka_test

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
)

// The documented bounds the group tests hold the Consumer's defaults to.
// Each is measured from the signal to the first message the other member
// applied from the partitions the stopped one held.
const (
	// killBound: the partitions of a member that died without leaving are
	// read again within SessionTimeout plus 2s.
	killBound = kafka.DefaultSessionTimeout + 2*time.Second
	// termBound: the partitions of a member that stopped and called Close
	// are read again within a second.
	termBound = time.Second
	// leaveBound: Close leaves the group at once, here within a second of
	// SIGTERM.
	leaveBound = time.Second
)

// slack is added to a bound where the time is incidental: until the last
// of a stopped member's partitions has been read, messages of the others,
// which piled up meanwhile, go first.
const slack = 3 * time.Second

// processTest skips t under -short, since it starts consumer processes,
// and otherwise runs it in parallel with the package's other tests.
func processTest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consumer processes")
	}
	t.Parallel()
}

// TestGroupKill SIGKILLs one of two member processes mid-stream. The
// survivor reads the partitions the dead member held within killBound of
// the kill (and the last of them, behind the backlog of the others, within
// killBound + slack), and every message takes effect exactly once.
func TestGroupKill(t *testing.T) {
	processTest(t)
	for _, s := range []testdb.Setup{testdb.SQLiteModernc, testdb.PostgresPgx} {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			first, last := killScenario(t, newGroup(t, s, ""))
			if first > killBound {
				t.Errorf("the survivor read the dead member's partitions %v after the kill; the documented bound is SessionTimeout + 2s = %v", first, killBound)
			}
			if last > killBound+slack {
				t.Errorf("the survivor read the last of the dead member's partitions %v after the kill, more than %v", last, killBound+slack)
			}
		})
	}
}

// TestGroupTerm stops one of two member processes with SIGTERM, on which
// it lets Run return and calls Close, as the package documents. The
// process exits cleanly, its LeaveGroup reaches the coordinator within
// leaveBound of the signal, the other member reads the partitions it held
// within termBound of the signal (the last of them within termBound +
// slack), and every message takes effect exactly once.
func TestGroupTerm(t *testing.T) {
	processTest(t)
	for _, s := range []testdb.Setup{testdb.SQLiteModernc, testdb.PostgresPQ} {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			left, first, last := termScenario(t, newGroup(t, s, ""))
			if left > leaveBound {
				t.Errorf("the member left the group %v after SIGTERM; it should leave at once (within %v)", left, leaveBound)
			}
			if first > termBound {
				t.Errorf("the other member read the stopped member's partitions %v after SIGTERM; the documented bound is %v", first, termBound)
			}
			if last > termBound+slack {
				t.Errorf("the other member read the last of the stopped member's partitions %v after SIGTERM, more than %v", last, termBound+slack)
			}
		})
	}
}

// TestGroupChurn SIGKILLs a member and starts a replacement every 0.3 to
// 1.5s, on a fixed pseudo-random schedule, for 12s. Messages keep taking
// effect while members are dying, after the first kill's rebalance, and
// once the churn stops the last two members finish the stream, each
// message taking effect exactly once.
//
// The members run with RebalanceTimeout 1s. kfake, unlike Kafka, restarts
// a rebalance's deadline at every join and never times out a member that
// died during its first JoinGroup, so under this churn a rebalance ends
// only when RebalanceTimeout passes without a join; with the default 3s the
// group does not settle until the churn stops (BenchmarkGroupRecovery
// measures both). Kafka ends a rebalance RebalanceTimeout after it began.
func TestGroupChurn(t *testing.T) {
	processTest(t)
	g := newGroup(t, testdb.SQLiteModernc, "rebalance=1s")
	s := churnScenario(t, g, 12*time.Second)
	if s.afterFirst < groupPartitions {
		t.Errorf("%d messages took effect between the first kill's rebalance and the end of the churn; consumption stopped", s.afterFirst)
	}
}

// killScenario starts members a and b, waits until they split the
// partitions, and SIGKILLs a. It returns how long after the kill b applied
// the first message, and the first of the last partition, of those a held
// (see group.takeover), then checks that every message took effect exactly
// once and that b stops cleanly.
func killScenario(tb testing.TB, g *group) (first, last time.Duration) {
	tb.Helper()
	a, b := g.start("a"), g.start("b")
	owned := g.owners("a", "b")
	at := a.signal(tb, syscall.SIGKILL)
	if err := a.wait(tb, 10*time.Second); err == nil {
		tb.Fatal("member a exited cleanly after SIGKILL")
	}
	first, last = g.takeover(at, owned["a"], "b")
	if _, ok := g.leftAfter(at); ok {
		tb.Error("a LeaveGroup reached the coordinator after the SIGKILL")
	}
	n := g.drain()
	tb.Logf("SIGKILL: b read a's partitions %v %v after the kill (the last of them %v); %d messages, each applied once",
		owned["a"], first.Round(time.Millisecond), last.Round(time.Millisecond), n)
	b.stop(tb)
	return first, last
}

// termScenario starts members a and b, waits until they split the
// partitions, and stops a with SIGTERM. It returns how long after the
// signal a's LeaveGroup reached the coordinator, and b applied the first
// message, and the first of the last partition, of those a held, then
// checks that every message took effect exactly once.
func termScenario(tb testing.TB, g *group) (left, first, last time.Duration) {
	tb.Helper()
	a, b := g.start("a"), g.start("b")
	owned := g.owners("a", "b")
	at := a.signal(tb, syscall.SIGTERM)
	if err := a.wait(tb, 30*time.Second); err != nil {
		tb.Errorf("member a after SIGTERM: %v", err)
	}
	leave, ok := g.leftAfter(at)
	if !ok {
		tb.Fatal("member a exited after SIGTERM without leaving the group")
	}
	first, last = g.takeover(at, owned["a"], "b")
	n := g.drain()
	tb.Logf("SIGTERM: a left %v after the signal; b read a's partitions %v %v after it (the last of them %v); %d messages, each applied once",
		leave.Sub(at).Round(time.Millisecond), owned["a"], first.Round(time.Millisecond), last.Round(time.Millisecond), n)
	b.stop(tb)
	return leave.Sub(at), first, last
}

// churnStats describes consumption while members were being killed.
type churnStats struct {
	kills      int
	applied    int           // effects during the churn
	afterFirst int           // effects from 2s after the first kill to the end of the churn
	rate       float64       // effects per second during the churn
	longest    time.Duration // longest time without any effect during the churn
	drain      time.Duration // from the end of the churn until every message took effect
}

// churnSeed fixes the churn's schedule, so that every run kills at the
// same pace.
const churnSeed = 1

// churnScenario keeps two members running and, for d, SIGKILLs one of them
// every 0.3 to 1.5s and starts a replacement. It measures consumption
// meanwhile, then stops publishing and checks that the last two members
// finish the stream, each message taking effect once.
func churnScenario(tb testing.TB, g *group, d time.Duration) churnStats {
	tb.Helper()
	live := []*member{g.start("a"), g.start("b")}
	g.owners("a", "b")
	rng := rand.New(rand.NewPCG(churnSeed, churnSeed))
	var s churnStats
	var first time.Time
	from := time.Now()
	for time.Since(from) < d {
		time.Sleep(300*time.Millisecond + time.Duration(rng.Int64N(int64(1200*time.Millisecond)))) // the churn's pace
		i := rng.IntN(len(live))
		at := live[i].signal(tb, syscall.SIGKILL)
		if first.IsZero() {
			first = at
		}
		s.kills++
		live[i] = g.start(fmt.Sprintf("r%d", s.kills))
	}
	to := time.Now()
	s.longest, s.applied = g.gaps(from, to)
	_, s.afterFirst = g.gaps(first.Add(2*time.Second), to)
	s.rate = float64(s.applied) / to.Sub(from).Seconds()
	n := g.drain()
	s.drain = time.Since(to)
	tb.Logf("churn: %d kills in %v; %d effects (%.0f/s of %.0f/s published), %d from 2s after the first kill, longest pause %v; "+
		"afterwards all %d messages took effect, each once, %v after the churn",
		s.kills, to.Sub(from).Round(time.Millisecond), s.applied, s.rate, float64(groupPartitions)/groupTick.Seconds(), s.afterFirst,
		s.longest.Round(time.Millisecond), n, s.drain.Round(time.Millisecond))
	for _, m := range live {
		m.stop(tb)
	}
	return s
}
