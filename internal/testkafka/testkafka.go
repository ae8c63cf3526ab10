// Package testkafka runs a Kafka-compatible broker for tests (franz-go's
// kfake, in the test's process, reached over loopback) and reads topics
// back with kafka-go, the client keel uses.
package testkafka

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster starts a one-broker kfake cluster with opts, closed when the
// test ends, and returns it with its address.
func Cluster(tb testing.TB, opts ...kfake.Opt) (*kfake.Cluster, string) {
	tb.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

// ReadTopic returns every record of topic, partition by partition in
// offset order, failing the test if that takes over 30 seconds.
func ReadTopic(tb testing.TB, addr, topic string) []kafkago.Message {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := ReadRecords(ctx, addr, topic)
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// ReadRecords is ReadTopic returning its error: it reads each partition
// from its first to its last offset with a plain partition reader (no
// consumer group).
func ReadRecords(ctx context.Context, addr, topic string) ([]kafkago.Message, error) {
	conn, err := kafkago.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].ID < parts[j].ID })
	var out []kafkago.Message
	for _, p := range parts {
		lc, err := kafkago.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			return nil, err
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			return nil, err
		}
		if last <= first {
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			r.Close()
			return nil, err
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read %s/%d: %w", topic, p.ID, err)
			}
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out, nil
}

// Header returns the value of a record's header key, and whether it has
// one.
func Header(m kafkago.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
