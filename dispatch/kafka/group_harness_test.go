package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// The group tests and benchmarks run consumers as separate processes: this
// test binary, re-run with -test.run=^TestGroupMember$. The members form one
// consumer group reading a kfake cluster that runs in the parent, over
// loopback, and apply every message through a dispatch.Router, with its
// inbox, to one shared database, recording which member applied it, from
// which partition, and when. The parent publishes a steady stream, kills or
// stops members, and reads the recovery off the effects' timestamps.
const (
	envMemberSetup    = "KEEL_KAFKA_MEMBER_SETUP"
	envMemberDSN      = "KEEL_KAFKA_MEMBER_DSN"
	envMemberBroker   = "KEEL_KAFKA_MEMBER_BROKER"
	envMemberName     = "KEEL_KAFKA_MEMBER_NAME"
	envMemberSettings = "KEEL_KAFKA_MEMBER_SETTINGS"

	groupTopic      = "ticks"
	groupID         = "members"
	groupPartitions = 6
	// groupTick is how often the parent publishes one message to every
	// partition: 100 messages a second in all, well within what two
	// members apply, so that each partition has a fresh message about
	// every 60ms and a stall shows at once.
	groupTick = 60 * time.Millisecond
)

// tick is the event the group tests publish.
type tick struct {
	Part int `json:"part"`
	N    int `json:"n"`
}

func (tick) EventName() string { return "group.tick" }

// TestGroupMember is a member process of the group tests; it skips unless
// one of them started it. It consumes until SIGTERM, then lets Run return
// and calls Close, as a service should, and exits.
func TestGroupMember(t *testing.T) {
	setup := os.Getenv(envMemberSetup)
	if setup == "" {
		t.Skip("member process of the consumer group tests")
	}
	s, err := testdb.SetupNamed(setup)
	if err != nil {
		t.Fatal(err)
	}
	db := testdb.Reopen(t, s, os.Getenv(envMemberDSN), store.Options{Logger: quiet})
	runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	router, err := dispatch.NewRouter(runner, aggregate.NewRegistry().MustRegister(tick{}), dispatch.RouterConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	name := os.Getenv(envMemberName)
	insert := db.Dialect().Rebind(`INSERT INTO group_effects (message_id, member, part, applied_at) VALUES (?, ?, ?, ?)`)
	dispatch.Handle(router, "effect", func(ctx context.Context, tx *uow.Tx, e tick) error {
		m, _ := dispatch.MessageFrom(ctx)
		_, err := tx.ExecContext(ctx, insert, m.ID, name, e.Part, time.Now().UnixNano())
		return err
	})
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := kafka.ConsumerConfig{Brokers: []string{os.Getenv(envMemberBroker)}, GroupID: groupID, Topics: []string{groupTopic}, Logger: logger}
	if err := applySettings(&cfg, os.Getenv(envMemberSettings)); err != nil {
		t.Fatal(err)
	}
	c, err := kafka.NewConsumer(cfg, router)
	if err != nil {
		t.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() { // an orphan stops, should the parent die first
		parent := os.Getppid()
		for ctx.Err() == nil && os.Getppid() == parent {
			time.Sleep(200 * time.Millisecond)
		}
		stop()
	}()
	logger.Info("member running", "name", name, "pid", os.Getpid())
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	logger.Info("member closed", "name", name, "close", time.Since(start))
}

// applySettings sets the group fields of cfg from a list such as
// "session=30s,heartbeat=3s,rebalance=30s,joinbackoff=5s".
func applySettings(cfg *kafka.ConsumerConfig, list string) error {
	for _, kv := range strings.Split(list, ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("setting %q: %w", kv, err)
		}
		switch k {
		case "session":
			cfg.SessionTimeout = d
		case "heartbeat":
			cfg.HeartbeatInterval = d
		case "rebalance":
			cfg.RebalanceTimeout = d
		case "joinbackoff":
			cfg.JoinGroupBackoff = d
		case "maxwait":
			cfg.MaxWait = d
		default:
			return fmt.Errorf("unknown setting %q", k)
		}
	}
	return nil
}

// group is the parent's side: the cluster, the database, the members and
// the stream of messages.
type group struct {
	tb       testing.TB
	db       testdb.DB
	addr     string
	dir      string
	settings string
	// patience bounds the waits for the group to recover; the benchmark
	// raises it for settings that recover slowly.
	patience time.Duration

	mu      sync.Mutex
	members []*member
	leaves  []time.Time // LeaveGroup requests, as the coordinator got them
	sent    int         // messages published
	pubErr  error
	stopPub context.CancelFunc
	pubDone chan struct{}
}

// member is one consumer process.
type member struct {
	name    string
	cmd     *exec.Cmd
	out     string // its output file
	started time.Time
	exited  chan struct{}
	err     error // how it exited, once exited is closed
}

// newGroup opens a database of setup s with the effects table, starts a
// cluster whose topic has groupPartitions partitions, and starts publishing
// a message to every partition every groupTick. settings are the members'
// group settings (see applySettings); empty means keel's defaults.
func newGroup(tb testing.TB, s testdb.Setup, settings string) *group {
	tb.Helper()
	db := testdb.Open(tb, s)
	if _, err := db.SQL().Exec(`CREATE TABLE group_effects (message_id TEXT NOT NULL, member TEXT NOT NULL, part BIGINT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	kc, addr := cluster(tb, kfake.SeedTopics(groupPartitions, groupTopic, groupTopic+".dlq"))
	g := &group{tb: tb, db: db, addr: addr, dir: tb.TempDir(), settings: settings, patience: 90 * time.Second}
	kc.ControlKey(int16(kmsg.LeaveGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		g.mu.Lock()
		g.leaves = append(g.leaves, time.Now())
		g.mu.Unlock()
		return nil, nil, false
	})
	tb.Cleanup(g.cleanup)
	g.publish()
	return g
}

// publish publishes a message to every partition every groupTick until
// stopPublishing.
func (g *group) publish() {
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: []string{g.addr}, Topic: groupTopic,
		// Key "p<i>" goes to partition i, so that every partition gets its
		// share of the stream.
		Balancer: kafkago.BalancerFunc(func(m kafkago.Message, partitions ...int) int {
			i, _ := strconv.Atoi(string(m.Key[1:]))
			return partitions[i%len(partitions)]
		}),
	})
	if err != nil {
		g.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.stopPub, g.pubDone = cancel, make(chan struct{})
	go func() {
		defer close(g.pubDone)
		defer pub.Close()
		t := time.NewTicker(groupTick)
		defer t.Stop()
		for n := 0; ; {
			batch := make([]outbox.Message, groupPartitions)
			for p := range batch {
				payload, _ := json.Marshal(tick{Part: p, N: n})
				batch[p] = outbox.Message{ID: fmt.Sprintf("tick-%07d", n), Name: "group.tick", Key: fmt.Sprintf("p%d", p), Payload: payload}
				n++
			}
			if err := pub.Publish(context.Background(), batch); err != nil {
				g.mu.Lock()
				g.pubErr = err
				g.mu.Unlock()
				return
			}
			g.mu.Lock()
			g.sent = n
			g.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// stopPublishing stops the stream and returns how many messages it
// published.
func (g *group) stopPublishing() int {
	g.tb.Helper()
	g.stopPub()
	<-g.pubDone
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pubErr != nil {
		g.tb.Fatalf("publish: %v", g.pubErr)
	}
	return g.sent
}

// start starts a member process called name.
func (g *group) start(name string) *member {
	g.tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGroupMember$", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(),
		envMemberSetup+"="+g.db.Setup.Name, envMemberDSN+"="+g.db.DSN, envMemberBroker+"="+g.addr,
		envMemberName+"="+name, envMemberSettings+"="+g.settings)
	m := &member{name: name, cmd: cmd, out: filepath.Join(g.dir, name+".out"), exited: make(chan struct{})}
	out, err := os.Create(m.out)
	if err != nil {
		g.tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		g.tb.Fatal(err)
	}
	m.started = time.Now()
	go func() {
		m.err = cmd.Wait()
		out.Close()
		close(m.exited)
	}()
	g.mu.Lock()
	g.members = append(g.members, m)
	g.mu.Unlock()
	return m
}

// signal sends sig to m and returns when it was sent.
func (m *member) signal(tb testing.TB, sig os.Signal) time.Time {
	tb.Helper()
	at := time.Now()
	if err := m.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal %s: %v", m.name, err)
	}
	return at
}

// wait waits up to timeout for m to exit and returns how it exited.
func (m *member) wait(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	select {
	case <-m.exited:
		return m.err
	case <-time.After(timeout):
		tb.Fatalf("member %s still running %v later", m.name, timeout)
		return nil
	}
}

// stop stops m with SIGTERM and checks that it closed and exited cleanly.
func (m *member) stop(tb testing.TB) {
	tb.Helper()
	m.signal(tb, syscall.SIGTERM)
	if err := m.wait(tb, 30*time.Second); err != nil {
		tb.Errorf("member %s after SIGTERM: %v", m.name, err)
	}
}

func (g *group) cleanup() {
	if g.stopPub != nil {
		g.stopPub()
		<-g.pubDone
	}
	g.mu.Lock()
	members := g.members
	g.mu.Unlock()
	for _, m := range members {
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	if g.tb.Failed() {
		for _, m := range members {
			b, _ := os.ReadFile(m.out)
			g.tb.Logf("output of member %s (%v):\n%s", m.name, m.err, b)
		}
	}
}

// leftAfter returns the first LeaveGroup the coordinator got after t.
func (g *group) leftAfter(t time.Time) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.leaves {
		if l.After(t) {
			return l, true
		}
	}
	return time.Time{}, false
}

// owners waits until the group is stable with exactly the named members:
// over the last half second every partition's messages were applied by one
// member, and the named members are those. It returns the partitions of
// each.
func (g *group) owners(names ...string) map[string][]int {
	g.tb.Helper()
	var owned map[string][]int
	testdb.Eventually(g.tb, 60*time.Second, fmt.Sprintf("members %v to split the partitions", names), func() bool {
		since := time.Now().Add(-500 * time.Millisecond)
		rows, err := g.db.SQL().Query(g.db.Dialect().Rebind(`SELECT DISTINCT part, member FROM group_effects WHERE applied_at > ?`), since.UnixNano())
		if err != nil {
			g.tb.Fatal(err)
		}
		defer rows.Close()
		byPart := map[int][]string{}
		for rows.Next() {
			var p int
			var m string
			if err := rows.Scan(&p, &m); err != nil {
				g.tb.Fatal(err)
			}
			byPart[p] = append(byPart[p], m)
		}
		if err := rows.Err(); err != nil {
			g.tb.Fatal(err)
		}
		if len(byPart) != groupPartitions {
			return false
		}
		owned = map[string][]int{}
		for p, ms := range byPart {
			if len(ms) != 1 {
				return false
			}
			owned[ms[0]] = append(owned[ms[0]], p)
		}
		if len(owned) != len(names) {
			return false
		}
		for _, n := range names {
			if len(owned[n]) == 0 {
				return false
			}
		}
		return true
	})
	return owned
}

// firstAfter returns, per partition in parts that any of the members
// applied a message of after t, the earliest such time.
func (g *group) firstAfter(t time.Time, parts []int, members ...string) map[int]time.Time {
	g.tb.Helper()
	q := `SELECT part, MIN(applied_at) FROM group_effects WHERE applied_at > ? AND member IN (?` + strings.Repeat(", ?", len(members)-1) + `) GROUP BY part`
	args := []any{t.UnixNano()}
	for _, m := range members {
		args = append(args, m)
	}
	rows, err := g.db.SQL().Query(g.db.Dialect().Rebind(q), args...)
	if err != nil {
		g.tb.Fatal(err)
	}
	defer rows.Close()
	want := map[int]bool{}
	for _, p := range parts {
		want[p] = true
	}
	out := map[int]time.Time{}
	for rows.Next() {
		var p int
		var at int64
		if err := rows.Scan(&p, &at); err != nil {
			g.tb.Fatal(err)
		}
		if want[p] {
			out[p] = time.Unix(0, at)
		}
	}
	if err := rows.Err(); err != nil {
		g.tb.Fatal(err)
	}
	return out
}

// takeover waits until members have applied a message of every partition
// in parts after t. It returns how long after t they applied the first of
// those messages, when they had taken the partitions over and were reading
// them, and how long after t the last partition's first message, which may
// have queued behind the backlog of the others.
func (g *group) takeover(t time.Time, parts []int, members ...string) (first, last time.Duration) {
	g.tb.Helper()
	var firsts map[int]time.Time
	testdb.Eventually(g.tb, g.patience, fmt.Sprintf("%v to apply messages of partitions %v", members, parts), func() bool {
		firsts = g.firstAfter(t, parts, members...)
		return len(firsts) == len(parts)
	})
	first = time.Duration(1<<63 - 1)
	for _, at := range firsts {
		first = min(first, at.Sub(t))
		last = max(last, at.Sub(t))
	}
	return first, last
}

// drain stops publishing, waits until every message has taken effect, and
// checks that each took effect once. It returns how many were published.
func (g *group) drain() int {
	g.tb.Helper()
	n := g.stopPublishing()
	testdb.Eventually(g.tb, g.patience, fmt.Sprintf("all %d messages applied", n), func() bool {
		return testdb.Count(g.tb, g.db, `SELECT COUNT(DISTINCT message_id) FROM group_effects`) >= n
	})
	if total, distinct := testdb.Count(g.tb, g.db, `SELECT COUNT(*) FROM group_effects`),
		testdb.Count(g.tb, g.db, `SELECT COUNT(DISTINCT message_id) FROM group_effects`); total != n || distinct != n {
		rows, err := g.db.SQL().Query(`SELECT message_id, COUNT(*) FROM group_effects GROUP BY message_id HAVING COUNT(*) > 1 ORDER BY message_id`)
		if err != nil {
			g.tb.Fatal(err)
		}
		defer rows.Close()
		var dups []string
		for rows.Next() && len(dups) < 20 {
			var id string
			var c int
			_ = rows.Scan(&id, &c)
			dups = append(dups, fmt.Sprintf("%s×%d", id, c))
		}
		g.tb.Fatalf("%d effects of %d distinct messages, want exactly %d, each once; applied more than once: %v", total, distinct, n, dups)
	}
	return n
}

// gaps returns the longest time without any effect between from and to,
// and how many effects were applied in between.
func (g *group) gaps(from, to time.Time) (longest time.Duration, applied int) {
	g.tb.Helper()
	rows, err := g.db.SQL().Query(g.db.Dialect().Rebind(`SELECT applied_at FROM group_effects WHERE applied_at > ? AND applied_at <= ? ORDER BY applied_at`), from.UnixNano(), to.UnixNano())
	if err != nil {
		g.tb.Fatal(err)
	}
	defer rows.Close()
	prev := from
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			g.tb.Fatal(err)
		}
		t := time.Unix(0, at)
		longest = max(longest, t.Sub(prev))
		prev = t
		applied++
	}
	if err := rows.Err(); err != nil {
		g.tb.Fatal(err)
	}
	return max(longest, to.Sub(prev)), applied
}
