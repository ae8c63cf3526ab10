package kafka_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

// kcatPath returns kcat's path, skipping the test when it is not installed
// (failing it under CI, which installs it).
func kcatPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not on PATH but CI is set: CI must install kcat (Debian package kcat)")
		}
		t.Skip("kcat is not on PATH; install it (Debian package kcat) to check records with librdkafka, an independent client")
	}
	return path
}

// TestKcat checks the Publisher's records with kcat (librdkafka), a client
// that shares no code with kafka-go: keys, headers, traceparent and empty
// payloads are what other Kafka consumers will see. It also feeds the
// Consumer a record kcat produced with keel headers.
func TestKcat(t *testing.T) {
	t.Parallel()
	kcat := kcatPath(t)
	topics := []string{"orders"}
	for _, s := range testdb.Setups {
		topics = append(topics, "inbound-"+s.Name, "inbound-"+s.Name+".dlq")
	}
	_, addr := cluster(t, kfake.SeedTopics(1, topics...))

	t.Run("consume", func(t *testing.T) {
		pub := newPublisher(t, kafka.PublisherConfig{Brokers: []string{addr}, Topic: "orders"})
		full := msg("order-1", 3)
		full.Headers = map[string]string{"traceparent": traceparent}
		full.CorrelationID = "corr-9"
		empty := outbox.Message{ID: "m-empty", Name: "ping", Key: "k-empty", Payload: []byte{}}
		if err := pub.Publish(context.Background(), []outbox.Message{full, empty}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, kcat, "-C", "-b", addr, "-t", "orders", "-o", "beginning", "-e", "-q",
			"-f", `%k\t%S\t%h\t%s\n`).CombinedOutput()
		if err != nil {
			t.Fatalf("kcat: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("kcat printed %d lines, want 2:\n%s", len(lines), out)
		}
		type rec struct{ Key, Size, Payload string }
		var recs []rec
		var headers []map[string]string
		for _, l := range lines {
			f := strings.Split(l, "\t")
			if len(f) != 4 {
				t.Fatalf("unexpected kcat line %q", l)
			}
			recs = append(recs, rec{f[0], f[1], f[3]})
			h := map[string]string{}
			for _, kv := range strings.Split(f[2], ",") {
				k, v, _ := strings.Cut(kv, "=")
				h[k] = v
			}
			headers = append(headers, h)
		}
		if diff := cmp.Diff([]rec{{"order-1", "7", `{"v":3}`}, {"k-empty", "0", ""}}, recs); diff != "" {
			t.Errorf("records (-want +got); size 0, not -1, means an empty value rather than a tombstone:\n%s", diff)
		}
		want := map[string]string{
			kafka.HeaderMessageID: "order-1-v3", kafka.HeaderName: "test.event",
			kafka.HeaderAggregateType: "account", kafka.HeaderAggregateID: "order-1", kafka.HeaderAggregateVersion: "3",
			kafka.HeaderCorrelationID: "corr-9", kafka.HeaderContentType: "application/json", kafka.HeaderTraceparent: traceparent,
		}
		if diff := cmp.Diff(want, headers[0]); diff != "" {
			t.Errorf("headers seen by kcat (-want +got):\n%s", diff)
		}
	})

	t.Run("produce", func(t *testing.T) {
		testdb.Each(t, func(t *testing.T, db testdb.DB) {
			// One topic per setup, so each consumer sees only its own record.
			topic := "inbound-" + db.Setup.Name
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, kcat, "-P", "-b", addr, "-t", topic, "-K", ":",
				"-H", kafka.HeaderMessageID+"=ext-1", "-H", kafka.HeaderName+"=shipment.sent",
				"-H", kafka.HeaderAggregateVersion+"=4", "-H", "traceparent="+traceparent)
			cmd.Stdin = strings.NewReader("ship-7:{\"carrier\":\"dhl\"}\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("kcat: %v\n%s", err, out)
			}
			h := newEffectHandler(t, db)
			runConsumer(t, newConsumer(t, kafka.ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{topic}}, h))
			testdb.Eventually(t, 30*time.Second, "the kcat record delivered", func() bool { return h.callCount() == 1 })
			want := outbox.Message{ID: "ext-1", Name: "shipment.sent", Topic: topic, Key: "ship-7", AggregateVersion: 4,
				Payload: []byte(`{"carrier":"dhl"}`), Headers: map[string]string{"traceparent": traceparent}}
			if diff := cmp.Diff(want, h.delivered()[0]); diff != "" {
				t.Errorf("delivered (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int{"ext-1": 1}, effects(t, db)); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
		})
	})
}
