package kafka_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/uow"
)

// parcelShipped is the event of the dead-letter replay test.
type parcelShipped struct {
	Parcel string `json:"parcel"`
}

func (parcelShipped) EventName() string { return "parcel.shipped" }

// TestDeadLetterReplay consumes three records of a producer other than
// keel's, one without a message id header, one with an id and one with the
// header present but empty, through a Router with two handlers: "ledger",
// which succeeds, and "mailer", which fails until it is fixed. Each record
// is dead-lettered after the ledger applied it, and each dead letter
// carries, in exactly one message id header, the id its record was
// delivered under. With the mailer fixed, the dead letters are produced to
// the original topic again, as an operator replays them: the mailer
// applies each once and the ledger skips each, so no effect happens twice.
func TestDeadLetterReplay(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		_, addr := cluster(t, kfake.SeedTopics(1, "in", "in.dlq"))
		if _, err := db.SQL().Exec(`CREATE TABLE replay_effects (handler TEXT NOT NULL, message_id TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		runner, err := uow.New(db.Store, uow.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		router, err := dispatch.NewRouter(runner, aggregate.NewRegistry().MustRegister(parcelShipped{}), dispatch.RouterConfig{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var fixed atomic.Bool
		effect := func(name string) func(ctx context.Context, tx *uow.Tx, e parcelShipped) error {
			return func(ctx context.Context, tx *uow.Tx, e parcelShipped) error {
				if name == "mailer" && !fixed.Load() {
					return errors.New("mail server rejects the template")
				}
				m, _ := dispatch.MessageFrom(ctx)
				_, err := tx.ExecContext(ctx, tx.Store().Dialect().Rebind(`INSERT INTO replay_effects (handler, message_id) VALUES (?, ?)`), name, m.ID)
				return err
			}
		}
		dispatch.Handle(router, "ledger", effect("ledger"))
		dispatch.Handle(router, "mailer", effect("mailer"))

		w := &kafkago.Writer{Addr: kafkago.TCP(addr), Topic: "in", RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
		defer w.Close()
		name := kafkago.Header{Key: kafka.HeaderName, Value: []byte("parcel.shipped")}
		value := []byte(`{"parcel":"p-1"}`)
		if err := w.WriteMessages(context.Background(),
			kafkago.Message{Key: []byte("absent"), Value: value, Headers: []kafkago.Header{name}},
			kafkago.Message{Key: []byte("present"), Value: value, Headers: []kafkago.Header{{Key: kafka.HeaderMessageID, Value: []byte("ext-7")}, name}},
			kafkago.Message{Key: []byte("empty"), Value: value, Headers: []kafkago.Header{{Key: kafka.HeaderMessageID, Value: []byte{}}, name}},
		); err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{"absent": kafka.DerivedID("in", 0, 0), "present": "ext-7", "empty": kafka.DerivedID("in", 0, 2)}

		runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"in"}, MaxAttempts: 2}, router))
		testdb.Eventually(t, 30*time.Second, "three records dead-lettered", func() bool { return committed(t, addr, "g", "in", 1)[0] == 3 })
		applied := func() map[string]int {
			rows, err := db.SQL().Query(`SELECT handler, message_id, COUNT(*) FROM replay_effects GROUP BY handler, message_id`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			out := map[string]int{}
			for rows.Next() {
				var h, id string
				var n int
				if err := rows.Scan(&h, &id, &n); err != nil {
					t.Fatal(err)
				}
				out[h+" "+id] = n
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		}
		want := map[string]int{}
		for _, id := range ids {
			want["ledger "+id] = 1
		}
		if diff := cmp.Diff(want, applied()); diff != "" {
			t.Fatalf("effects before the replay (-want +got):\n%s", diff)
		}

		dead := readTopic(t, addr, "in.dlq")
		got := map[string][]string{}
		for _, d := range dead {
			for _, h := range d.Headers {
				if h.Key == kafka.HeaderMessageID {
					got[string(d.Key)] = append(got[string(d.Key)], string(h.Value))
				}
			}
		}
		wantIDs := map[string][]string{}
		for k, id := range ids {
			wantIDs[k] = []string{id}
		}
		if diff := cmp.Diff(wantIDs, got); diff != "" {
			t.Errorf("message id headers of the dead letters, by key (-want +got):\n%s", diff)
		}

		// The fix is deployed; the operator replays the dead letters.
		fixed.Store(true)
		replay := make([]kafkago.Message, len(dead))
		for i, d := range dead {
			replay[i] = kafkago.Message{Key: d.Key, Value: d.Value, Headers: d.Headers}
		}
		if err := w.WriteMessages(context.Background(), replay...); err != nil {
			t.Fatal(err)
		}
		testdb.Eventually(t, 30*time.Second, "the replays consumed", func() bool { return committed(t, addr, "g", "in", 1)[0] == 6 })
		for _, id := range ids {
			want["mailer "+id] = 1
		}
		if diff := cmp.Diff(want, applied()); diff != "" {
			t.Errorf("effects after the replay, per handler and message id (-want +got):\n%s", diff)
		}
		if n := len(readTopic(t, addr, "in.dlq")); n != 3 {
			t.Errorf("%d dead letters after the replay, want the 3 from before", n)
		}
	})
}
