package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/internal/testkafka"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/uow"
)

// quiet discards logs; set KEEL_TEST_LOG=1 to see them.
var quiet = testdb.Logger()

// cluster starts an in-process Kafka-compatible cluster on a loopback port
// and returns it with its bootstrap address. Topics are not created on
// demand unless an option says so.
func cluster(t testing.TB, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	return testkafka.Cluster(t, opts...)
}

func newPublisher(t testing.TB, cfg kafka.PublisherConfig) *kafka.Publisher {
	t.Helper()
	p, err := kafka.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

var (
	readTopic   = testkafka.ReadTopic
	readRecords = testkafka.ReadRecords
	header      = testkafka.Header
)

func headerMap(m kafkago.Message) map[string]string {
	out := map[string]string{}
	for _, h := range m.Headers {
		out[h.Key] = string(h.Value)
	}
	return out
}

// effectHandler is a Handler doing what dispatch.Router does for one
// handler: in one unit of work it records (handler, message id) in the
// inbox and, unless that row already existed, applies an effect (a row in
// kafka_effects). fail, when set, is asked after the effect is written, so
// a failure exercises the rollback.
type effectHandler struct {
	runner *uow.Runner
	name   string
	fail   func(m outbox.Message, attempt int) error

	mu       sync.Mutex
	attempts map[string]int   // deliveries begun, per message id
	calls    []outbox.Message // deliveries that succeeded, in order
}

func newEffectHandler(t testing.TB, db testdb.DB) *effectHandler {
	t.Helper()
	r, err := uow.New(db.Store, uow.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec(`CREATE TABLE kafka_effects (message_id TEXT NOT NULL, msg_key TEXT NOT NULL, version BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return &effectHandler{runner: r, name: "test-handler", attempts: map[string]int{}}
}

func (h *effectHandler) Deliver(ctx context.Context, m outbox.Message) error {
	h.mu.Lock()
	h.attempts[m.ID]++
	attempt := h.attempts[m.ID]
	h.mu.Unlock()
	err := h.runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
		st := tx.Store()
		d := st.Dialect()
		// The inbox row as the Router writes it: an insert that does nothing,
		// or fails as a key conflict (MySQL), when the row is there.
		insert := d.Rebind(d.InsertIfAbsent(st.Table("inbox"), []string{"handler", "message_id", "processed_at"}, []string{"handler", "message_id"}))
		effect := d.Rebind("INSERT INTO kafka_effects (message_id, msg_key, version) VALUES (?, ?, ?)")
		res, err := tx.ExecContext(ctx, insert, h.name, m.ID, d.Time(time.Now()))
		if err != nil {
			if d.Classify(err) == dialect.KeyConflict {
				return nil // already applied
			}
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // already applied
		}
		if _, err := tx.ExecContext(ctx, effect, m.ID, m.Key, m.AggregateVersion); err != nil {
			return err
		}
		if h.fail != nil {
			return h.fail(m, attempt)
		}
		return nil
	})
	if err == nil {
		h.mu.Lock()
		h.calls = append(h.calls, m)
		h.mu.Unlock()
	}
	return err
}

func (h *effectHandler) attemptsOf(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attempts[id]
}

func (h *effectHandler) delivered() []outbox.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]outbox.Message(nil), h.calls...)
}

func (h *effectHandler) callCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

// effects returns the effect rows per message id.
func effects(t testing.TB, db testdb.DB) map[string]int {
	t.Helper()
	rows, err := db.SQL().Query(`SELECT message_id, COUNT(*) FROM kafka_effects GROUP BY message_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// runConsumer starts c.Run in the background; cleanup stops it and checks
// that Run returned nil.
func runConsumer(t testing.TB, c *kafka.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Consumer.Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Consumer.Run did not return after cancel")
			}
			_ = c.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// committed returns the group's committed offset per partition of topic
// (-1 where none).
func committed(t testing.TB, addr, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(addr), Timeout: 10 * time.Second}
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	res, err := client.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	if errors.Is(res.Error, kafkago.GroupIdNotFound) {
		return out // the group has not formed yet: nothing committed
	}
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("offset fetch %s/%d: %v", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

func msg(key string, version int64) outbox.Message {
	return outbox.Message{
		ID:               fmt.Sprintf("%s-v%d", key, version),
		Name:             "test.event",
		Key:              key,
		AggregateType:    "account",
		AggregateID:      key,
		AggregateVersion: version,
		Payload:          []byte(fmt.Sprintf(`{"v":%d}`, version)),
	}
}
