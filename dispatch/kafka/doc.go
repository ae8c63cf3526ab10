// Package kafka delivers outbox messages to Apache Kafka and consumes them
// back into handlers, using github.com/segmentio/kafka-go.
//
// # Publishing
//
// A Publisher is an outbox.Publisher: give it to outbox.NewRelay and the
// relay writes committed outbox rows to Kafka.
//
//	st, err := store.Open(db, postgres.Dialect(), store.Options{})
//	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
//		Brokers: []string{"kafka-1:9092", "kafka-2:9092"},
//		Topic:   "orders", // or TopicFunc, choosing by aggregate type
//	})
//	relay, err := outbox.NewRelay(st, pub, outbox.RelayConfig{})
//	go relay.Run(ctx)
//
// Units of work wake the relay as they commit, so events reach Kafka
// without waiting for a poll; relay.Outbox().Stats tells how many wait.
// NewPublisher and NewConsumer check their configuration and report a
// field they cannot use with an error matching store.ErrInvalidConfig.
//
// Each message becomes one record. Its key is Message.PartitionKey (the
// aggregate id for aggregate events), so all events of one aggregate land on
// one partition. Its value is the payload, unchanged. Its topic is
// Message.Topic, else what PublisherConfig.TopicFunc returns, else
// PublisherConfig.Topic.
//
// # Headers
//
// The message's fields travel as headers, as UTF-8 text, left out when
// empty:
//
//	keel-message-id          Message.ID; consumers deduplicate on it
//	keel-name                Message.Name, the event name
//	keel-aggregate-type      Message.AggregateType
//	keel-aggregate-id        Message.AggregateID
//	keel-aggregate-version   Message.AggregateVersion, decimal
//	keel-correlation-id      Message.CorrelationID
//	keel-causation-id        Message.CausationID
//	keel-occurred-at         Message.OccurredAt, RFC 3339 UTC
//	content-type             the message's own, else PublisherConfig.ContentType
//
// Every entry of Message.Headers follows under its own name, so a W3C
// traceparent recorded with an event reaches consumers as the traceparent
// header, ready for any OpenTelemetry Kafka propagator. The Header constants
// name them all.
//
// # Guarantees
//
// Publish returns only once every record is acknowledged by all in-sync
// replicas (acks=all); whatever it reports delivered, the relay marks done.
// Delivery is at least once: a batch whose acknowledgement was lost is sent
// again, and kafka-go has no idempotent producer, so consumers see
// occasional duplicates and must deduplicate on keel-message-id, as the
// inbox does.
//
// Order per key holds in the topic. The relay hands over a key's messages
// in enqueue order, and the balancer hashes the key to one partition. The
// rest depends on how kafka-go's Writer works: it keeps one goroutine per
// partition that sends that partition's record batches one at a time, and
// retries a batch before sending the next, so its retries cannot overtake
// one another; but it sends the next batch even when the previous one
// failed for good, and splits a partition's share of one WriteMessages
// call into several batches when it exceeds BatchSize or BatchBytes. A
// Publisher therefore writes a relay batch in rounds that each fit one
// record batch per partition, never with a key's messages for two topics
// in one round, and once a message fails it sends none of its key's later
// messages, whatever their topic (they are reported with
// outbox.ErrHeldBack, and the relay sends them after the failed one).
// Publish calls on one Publisher are serialised so that two batches never
// share a record batch.
// Duplicates keep order in the sense that matters to a deduplicating
// consumer: the first copy of each message arrives in order. Adding
// partitions to a topic moves keys, which breaks order across the change,
// as for any Kafka producer.
//
// The default balancer is murmur2, the Java client's, so keel and other
// producers agree on which partition a key belongs to.
//
// Errors that no retry can fix (a message larger than BatchBytes, a topic
// name Kafka rejects, MESSAGE_TOO_LARGE from the broker) wrap
// outbox.ErrPermanent, so the relay parks the message at once. Everything
// else, a broker outage or a topic not created yet included, is retried by
// the relay with backoff; rows wait in the outbox meanwhile, and nothing is
// lost. The Publisher keeps the contract of outbox.Publisher, which package
// outbox/publishertest checks against a cluster in its tests.
//
// # Consuming
//
// A Consumer reads topics through a consumer group and hands each message,
// converted back to an outbox.Message, to a Handler: a dispatch.Router, or
// anything with the method
//
//	Deliver(ctx context.Context, m outbox.Message) error
//
// It commits a message's offset only after Deliver returned nil, so a crash
// between the handler's commit and the offset commit delivers the message
// again: handlers record each message id in an inbox row in the same
// transaction as their effects, and the second delivery has no effect. A
// record produced without keel headers (or with an empty keel-message-id)
// is given the id "kafka:<topic>:<partition>:<offset>" (see DerivedID),
// which is the same on every redelivery.
//
// # Consumer groups
//
// Consumers sharing a GroupID split the topics' partitions between them.
// When a member joins, leaves or dies, the group rebalances: every member
// stops, rejoins and is given partitions anew, so a rebalance pauses the
// whole group for a moment. ConsumerConfig's SessionTimeout,
// HeartbeatInterval, RebalanceTimeout and JoinGroupBackoff say how soon,
// and their defaults (6s, 250ms, 3s and 250ms, in place of kafka-go's 30s,
// 3s, 30s and 5s) make a group recover quickly:
//
//   - a member that calls Close leaves its group at once, and the others
//     read its partitions within a second;
//   - a member that dies without leaving (a crash, SIGKILL, a lost
//     machine) is noticed only when its session expires: its partitions
//     are read again within SessionTimeout plus a second or two;
//   - partitions added to a topic are read within seconds.
//
// Their field comments weigh what each costs; docs/kafka.md has the
// measurements. Whatever the settings, a message whose offset was not
// committed when its partition moved is delivered again to the new owner,
// and the inbox makes that harmless.
//
// # Stopping
//
// Call Close when the program is told to stop, so that the member leaves
// its group at once instead of being waited for until its session expires:
//
//	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	err := consumer.Run(ctx) // returns nil once the signal came
//	consumer.Close()         // leaves the group; the others take over
//
// # Dead letters
//
// A failed delivery is retried with exponential backoff and jitter, holding
// its partition, up to ConsumerConfig.MaxAttempts times; an error wrapping
// outbox.ErrPermanent is not retried. The message is then written to the
// dead-letter topic ("<topic>.dlq" unless ConsumerConfig.DeadLetterTopic
// says otherwise) with its key, value and headers, plus
//
//	keel-error               the last error's text
//	keel-attempts            deliveries tried
//	keel-original-topic      where it was consumed from
//	keel-original-partition
//	keel-original-offset
//	keel-dead-lettered-at    RFC 3339 UTC
//
// and only once the dead-letter topic has acknowledged it is the original
// offset committed and the partition moves on. The dead letter's
// keel-message-id is always the id the message was delivered under, the
// derived one for a record whose header was missing or empty. Replay a dead
// letter by producing it to its original topic again: its message id is
// unchanged, so handlers that did apply it skip it.
package kafka
