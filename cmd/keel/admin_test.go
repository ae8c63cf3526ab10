package main

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

type paidEvent struct {
	Order string `json:"order"`
}

func (paidEvent) EventName() string { return "order.paid" }

// park marks rows parked, as a relay does after their last attempt.
func park(t *testing.T, db testdb.DB, ids ...string) {
	t.Helper()
	d := db.Dialect()
	for _, id := range ids {
		if _, err := db.SQL().Exec(d.Rebind("UPDATE keel_outbox SET state = 2, attempts = 5, last_error = ?, next_attempt_at = ? WHERE id = ?"),
			"broker said no\nsecond line", d.Time(time.Now()), id); err != nil {
			t.Fatal(err)
		}
	}
}

// delivered collects what a relay published, in order.
type delivered struct {
	mu  sync.Mutex
	ids []string
}

func (d *delivered) Publish(_ context.Context, batch []outbox.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range batch {
		d.ids = append(d.ids, m.ID)
	}
	return nil
}

func (d *delivered) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ids)
}

// TestAdmin runs every administration command against a real database, in
// text and in JSON, from migration to requeueing parked messages that a
// running relay then delivers.
func TestAdmin(t *testing.T) {
	for _, s := range setups {
		t.Run(s.Name, func(t *testing.T) {
			db := freshDatabase(t, s)
			dsn := []string{"--dsn", db.dsn}
			ctx := context.Background()

			// Before migrating: a clear error naming the fix.
			fails(t, 1, []string{"not migrated", "keel migrate"}, append([]string{"stats"}, dsn...)...)

			// migrate --print renders the SQL without touching the database.
			printed := ok(t, append([]string{"migrate", "--print", "--prefix", "ops_"}, dsn...)...)
			if !strings.Contains(printed, "CREATE TABLE") || !strings.Contains(printed, "ops_outbox") || strings.Contains(printed, "keel_outbox") {
				t.Errorf("migrate --print --prefix ops_ printed:\n%.400s", printed)
			}
			var migs []struct {
				Version int
				Name    string
				SQL     string
			}
			decode(t, &migs, append([]string{"migrate", "--print"}, dsn...)...)
			if len(migs) == 0 || migs[0].Version != 1 || !strings.Contains(migs[0].SQL, "keel_outbox") {
				t.Errorf("migrate --print --json: %+v", migs)
			}
			fails(t, 1, []string{"not migrated"}, append([]string{"stats"}, dsn...)...)

			out := ok(t, append([]string{"migrate"}, dsn...)...)
			if !strings.Contains(out, "migrated") {
				t.Errorf("migrate printed %q", out)
			}
			var mig struct {
				Migrated bool
				Version  int
			}
			decode(t, &mig, append([]string{"migrate"}, dsn...)...) // again: nothing to do
			if !mig.Migrated || mig.Version != len(migs) {
				t.Errorf("migrate --json = %+v, want version %d", mig, len(migs))
			}

			// Three parked messages, a3 held behind a1 and a2, c1 pending.
			ob, err := outbox.New(db.st)
			if err != nil {
				t.Fatal(err)
			}
			msg := func(id, key string) outbox.Message {
				return outbox.Message{ID: id, Name: "order.paid", Key: key, Payload: []byte(`{"order":"` + id + `","n":[1,2]}`),
					Headers: map[string]string{"tenant": "t-1"}}
			}
			if err := ob.Enqueue(ctx, msg("a1", "a"), msg("a2", "a"), msg("a3", "a"), msg("b1", "b"), msg("c1", "c")); err != nil {
				t.Fatal(err)
			}
			park(t, db.db, "a1", "a2", "b1")

			var st struct {
				Pending, Retrying, Parked int
				OldestPendingSeconds      float64 `json:"oldest_pending_seconds"`
			}
			decode(t, &st, append([]string{"stats"}, dsn...)...)
			if st.Pending != 2 || st.Parked != 3 || st.Retrying != 0 || st.OldestPendingSeconds <= 0 {
				t.Errorf("stats --json = %+v, want 2 pending, 3 parked", st)
			}
			if out := ok(t, append([]string{"stats"}, dsn...)...); !strings.Contains(out, "parked") || !strings.Contains(out, "3") {
				t.Errorf("stats printed:\n%s", out)
			}

			var list []struct {
				ID, Key, State string
				LastError      string `json:"last_error"`
				Payload        map[string]any
				Attempts       int
			}
			decode(t, &list, append([]string{"parked", "list"}, dsn...)...)
			var ids []string
			for _, p := range list {
				ids = append(ids, p.ID)
				if p.State != "parked" || p.LastError != "broker said no\nsecond line" || p.Attempts != 5 || p.Payload["order"] != p.ID {
					t.Errorf("parked list entry %+v", p)
				}
			}
			if diff := cmp.Diff([]string{"a1", "a2", "b1"}, ids); diff != "" {
				t.Errorf("parked list (-want +got):\n%s", diff)
			}
			text := ok(t, append([]string{"parked", "list", "--key", "a"}, dsn...)...)
			if !strings.Contains(text, "a1") || !strings.Contains(text, "a2") || strings.Contains(text, "b1") ||
				!strings.Contains(text, `broker said no\nsecond line`) {
				t.Errorf("parked list --key a printed:\n%s", text)
			}
			page := ok(t, append([]string{"parked", "list", "--limit", "2"}, dsn...)...)
			if !strings.Contains(page, "--after") {
				t.Errorf("a full page does not say how to get the next:\n%s", page)
			}

			show := ok(t, append([]string{"parked", "show", "a1"}, dsn...)...)
			for _, want := range []string{"parked", `"a"`, "order.paid", "tenant", "\"order\": \"a1\"", "broker said no"} {
				if !strings.Contains(show, want) {
					t.Errorf("parked show a1 lacks %q:\n%s", want, show)
				}
			}
			var one struct {
				ID, State string
				Headers   map[string]string
			}
			decode(t, &one, append([]string{"parked", "show", "c1"}, dsn...)...)
			if one.ID != "c1" || one.State != "pending" || one.Headers["tenant"] != "t-1" {
				t.Errorf("parked show c1 --json = %+v", one)
			}

			// Bad ids and arguments.
			fails(t, 1, []string{"no outbox message", `"nope"`}, append([]string{"parked", "show", "nope"}, dsn...)...)
			fails(t, 1, []string{"no outbox message", `"nope"`}, append([]string{"parked", "requeue", "nope"}, dsn...)...)
			fails(t, 1, []string{`"c1" is pending, not parked`}, append([]string{"parked", "requeue", "c1"}, dsn...)...)
			fails(t, 1, []string{"no parked messages", `"zzz"`}, append([]string{"parked", "requeue", "--key", "zzz"}, dsn...)...)
			fails(t, 2, []string{"missing the message ID"}, append([]string{"parked", "show"}, dsn...)...)
			fails(t, 2, []string{"either a message ID or --key"}, append([]string{"parked", "requeue", "a1", "--key", "a"}, dsn...)...)

			// A relay runs; the parked keys wait for their requeue.
			pub := &delivered{}
			relay, err := outbox.NewRelay(db.st, pub, outbox.RelayConfig{ID: "relay-cli-test", Logger: testdb.Logger(),
				MaxPollInterval: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- relay.Run(rctx) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			testdb.Eventually(t, 10*time.Second, "c1 delivered", func() bool { return slices.Contains(pub.list(), "c1") })

			var ls []struct {
				Partition int
				Owner     string
				Held      bool
			}
			testdb.Eventually(t, 10*time.Second, "the relay to hold every lease", func() bool {
				decode(t, &ls, append([]string{"leases"}, dsn...)...)
				for _, l := range ls {
					if !l.Held || l.Owner != "relay-cli-test" {
						return false
					}
				}
				return len(ls) == 64
			})
			if out := ok(t, append([]string{"leases"}, dsn...)...); !strings.Contains(out, "relay-cli-test") || !strings.Contains(out, "0-63") {
				t.Errorf("leases printed:\n%s", out)
			}

			if out := ok(t, append([]string{"parked", "requeue", "b1"}, dsn...)...); !strings.Contains(out, "requeued") {
				t.Errorf("requeue b1 printed %q", out)
			}
			var rk struct{ Requeued int }
			decode(t, &rk, append([]string{"parked", "requeue", "--key", "a"}, dsn...)...)
			if rk.Requeued != 2 {
				t.Errorf("requeue --key a requeued %d, want 2", rk.Requeued)
			}
			// Published, then settled: the publisher sees a batch before the
			// relay deletes its rows.
			testdb.Eventually(t, 10*time.Second, "the requeued messages delivered", func() bool {
				s, err := ob.Stats(ctx)
				return err == nil && s.Pending == 0 && len(pub.list()) == 5
			})
			got := pub.list()
			var aOrder []string
			for _, id := range got {
				if strings.HasPrefix(id, "a") {
					aOrder = append(aOrder, id)
				}
			}
			if diff := cmp.Diff([]string{"a1", "a2", "a3"}, aOrder); diff != "" {
				t.Errorf("key a delivered out of order after its requeue (-want +got):\n%s", diff)
			}
			decode(t, &st, append([]string{"stats"}, dsn...)...)
			if st.Pending != 0 || st.Parked != 0 {
				t.Errorf("after the requeues: stats %+v", st)
			}
		})
	}
}

// TestInboxShow delivers a message to two handlers through a Router, one
// failing, and reads the message's inbox with the command.
func TestInboxShow(t *testing.T) {
	for _, s := range setups {
		t.Run(s.Name, func(t *testing.T) {
			db := freshDatabase(t, s)
			ctx := context.Background()
			if err := db.st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			dsn := []string{"--dsn", db.dsn}
			runner, err := uow.New(db.st, uow.Config{Logger: testdb.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			router, err := dispatch.NewRouter(runner, aggregate.NewRegistry(), dispatch.RouterConfig{Logger: testdb.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			dispatch.Handle(router, "receipt", func(context.Context, *uow.Tx, paidEvent) error { return nil })
			dispatch.Handle(router, "points", func(context.Context, *uow.Tx, paidEvent) error { return context.DeadlineExceeded })
			m := outbox.Message{ID: aggregate.NewMessageID(), Name: "order.paid", Key: "o-1", Payload: []byte(`{"order":"o-1"}`)}
			if err := router.Deliver(ctx, m); err == nil {
				t.Fatal("Deliver succeeded, want the points handler's failure")
			}

			var in struct {
				ID          string
				OutboxState string `json:"outbox_state"`
				ProcessedBy []struct {
					Handler     string
					ProcessedAt time.Time `json:"processed_at"`
				} `json:"processed_by"`
			}
			decode(t, &in, append([]string{"inbox", "show", m.ID}, dsn...)...)
			if in.ID != m.ID || in.OutboxState != "not in the outbox" || len(in.ProcessedBy) != 1 ||
				in.ProcessedBy[0].Handler != "receipt" || time.Since(in.ProcessedBy[0].ProcessedAt) > time.Minute {
				t.Errorf("inbox show --json = %+v", in)
			}
			if out := ok(t, append([]string{"inbox", "show", m.ID}, dsn...)...); !strings.Contains(out, "receipt") || strings.Contains(out, "points") {
				t.Errorf("inbox show printed:\n%s", out)
			}
			fails(t, 1, []string{"no handler has applied", `"unknown-id"`}, append([]string{"inbox", "show", "unknown-id"}, dsn...)...)
		})
	}
}

// TestBadInput checks that mistakes give one clear line and a non-zero
// exit, without a database or with one that is wrong.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"no command", 2, []string{"Usage"}, nil},
		{"unknown command", 2, []string{`unknown command "frobnicate"`}, []string{"frobnicate"}},
		{"parked alone", 2, []string{`"parked" needs a subcommand`}, []string{"parked"}},
		{"no dsn", 2, []string{"--dsn", "KEEL_DSN"}, []string{"stats"}},
		{"unknown flag", 2, []string{"-frob"}, []string{"stats", "--frob"}},
		{"missing file", 1, []string{"no SQLite database at", "keel migrate"}, []string{"stats", "--dsn", "sqlite:" + dir + "/missing.db"}},
		{"unreachable server", 1, []string{"cannot reach PostgreSQL", "check --dsn"}, []string{"stats", "--dsn", "postgres://keel:secret@127.0.0.1:1/app?sslmode=disable&connect_timeout=2"}},
		{"unknown scheme", 2, []string{"unknown database URL"}, []string{"stats", "--dsn", "redis://127.0.0.1:6379"}},
		{"bad prefix", 1, []string{"TablePrefix"}, []string{"migrate", "--dsn", "sqlite:" + dir + "/x.db", "--prefix", "x; DROP TABLE y"}},
		{"mysql without database", 2, []string{"names no database"}, []string{"stats", "--dsn", "mysql://root@127.0.0.1:3306/"}},
		{"negative limit", 2, []string{"--limit"}, []string{"parked", "list", "--dsn", "sqlite:" + dir + "/x.db", "--limit", "-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := keel(t, c.args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d; stderr %q", r.code, c.code, r.stderr)
			}
			all := r.stderr + r.stdout
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("output %q does not say %q", all, w)
				}
			}
			if strings.Contains(all, "secret") {
				t.Errorf("output shows the password: %q", all)
			}
		})
	}
	// --help on every command exits 0 and describes --dsn.
	for _, cmd := range commands {
		args := append(strings.Fields(cmd.name), "--help")
		if out := ok(t, args...); !strings.Contains(out, "-dsn") || !strings.Contains(out, "Usage: keel "+cmd.name) {
			t.Errorf("keel %s --help printed:\n%s", cmd.name, out)
		}
	}
}
