package outbox_test

import (
	"context"
	"fmt"
	"log"

	"github.com/keel-go/keel/outbox"
)

// Errors that differ only in numbers, ids and quoted values share a
// pattern, and so a fingerprint.
func ExampleErrorPattern() {
	for _, e := range []string{
		"order 17: timeout after 3s",
		"order 912: timeout after 5s",
		`message 550e8400-e29b-41d4-a716-446655440000: field "coupon" unknown`,
	} {
		fmt.Println(outbox.ErrorFingerprint(e), outbox.ErrorPattern(e))
	}
	// Output:
	// bdb3cb228656 order #: timeout after #s
	// bdb3cb228656 order #: timeout after #s
	// f92352de27e1 message #: field "?" unknown
}

// An operator's console shows what is parked, by key and by error, and
// requeues an error group once its cause is fixed.
func ExampleOutbox_ParkedErrors() {
	st, cleanup := openExampleStore()
	defer cleanup()
	ctx := context.Background()

	ob, err := outbox.New(st)
	if err != nil {
		log.Fatal(err)
	}
	err = ob.Enqueue(ctx,
		outbox.Message{Name: "order.placed", Key: "order-17", Payload: []byte(`{"coupon":"X"}`)},
		outbox.Message{Name: "order.placed", Key: "order-912", Payload: []byte(`{"coupon":"Y"}`)},
		outbox.Message{Name: "invoice.issued", Key: "inv-3", Payload: []byte(`{}`)},
	)
	if err != nil {
		log.Fatal(err)
	}
	// The destination refuses orders, for good, until its schema knows
	// coupons.
	fixed := false
	publish := outbox.PublisherFunc(func(ctx context.Context, batch []outbox.Message) error {
		errs := make([]error, len(batch))
		failed := false
		for i, m := range batch {
			if m.Name == "order.placed" && !fixed {
				errs[i] = fmt.Errorf("%w: %s: field %q unknown", outbox.ErrPermanent, m.Key, "coupon")
				failed = true
			}
		}
		if failed {
			return &outbox.BatchError{Errs: errs}
		}
		return nil
	})
	relay, err := outbox.NewRelay(st, publish, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	n, err := relay.Drain(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("delivered:", n)

	keys, err := ob.ParkedKeys(ctx, outbox.ParkedKeysQuery{})
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range keys {
		fmt.Println("parked key:", k.Key, k.Count, k.FirstName)
	}
	groups, err := ob.ParkedErrors(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range groups {
		fmt.Printf("%d messages of %d keys: %s\n", g.Count, g.Keys, g.Pattern)
	}

	fixed = true
	requeued, err := ob.RequeueError(ctx, groups[0].Fingerprint)
	if err != nil {
		log.Fatal(err)
	}
	n, err = relay.Drain(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("requeued:", requeued, "delivered:", n)
	// Output:
	// delivered: 1
	// parked key: order-17 1 order.placed
	// parked key: order-912 1 order.placed
	// 2 messages of 2 keys: keel: permanent delivery failure: order-#: field "?" unknown
	// requeued: 2 delivered: 2
}
