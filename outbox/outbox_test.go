package outbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

func TestEnqueue(t *testing.T) {
	each(t, func(t *testing.T, db testdb.DB) {
		ctx := context.Background()
		ob := newOutbox(t, db.Store)
		if err := db.CheckSchema(ctx); err != nil {
			t.Fatal(err)
		}
		msgs := []outbox.Message{
			{Name: "a", AggregateID: "k1", Payload: []byte(`{}`), Headers: map[string]string{"traceparent": "00-x"}},
			{Name: "b", Key: "k2", Payload: []byte{}},
		}
		if err := ob.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if msgs[0].ID == "" || msgs[1].ID == "" || msgs[0].ID == msgs[1].ID {
			t.Fatalf("ids not assigned: %q %q", msgs[0].ID, msgs[1].ID)
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox WHERE state = 0"); n != 2 {
			t.Fatalf("pending rows = %d; want 2", n)
		}
		var key, headers string
		if err := db.SQL().QueryRow("SELECT partition_key, headers FROM keel_outbox WHERE name = 'a'").Scan(&key, &headers); err != nil {
			t.Fatal(err)
		}
		if key != "k1" || headers != `{"traceparent":"00-x"}` {
			t.Fatalf("row = %q %q", key, headers)
		}
		// Rolled back with the caller's transaction.
		tx, err := db.SQL().Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.EnqueueTx(ctx, tx, outbox.Message{Name: "c", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_outbox"); n != 2 {
			t.Fatalf("rows after rollback = %d, want 2", n)
		}
		// Bad input.
		if err := ob.Enqueue(ctx, outbox.Message{Payload: []byte{}}); !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Fatalf("empty name: %v", err)
		}
		if err := ob.Enqueue(ctx, outbox.Message{ID: msgs[0].ID, Name: "dup", Payload: []byte{}}); !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Fatalf("duplicate id: %v", err)
		}
	})
}

func TestNotMigrated(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		db := testdb.OpenEmpty(t, s)
		ob := newOutbox(t, db.Store)
		err := ob.Enqueue(ctx, outbox.Message{Name: "a", Payload: []byte{}})
		if !errors.Is(err, store.ErrNotMigrated) {
			t.Fatalf("err = %v, want ErrNotMigrated", err)
		}
		if err := db.CheckSchema(ctx); !errors.Is(err, store.ErrNotMigrated) {
			t.Fatalf("CheckSchema = %v", err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		if err := ob.Enqueue(ctx, outbox.Message{Name: "a", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBadPrefix(t *testing.T) {
	t.Parallel()
	db := testdb.OpenEmpty(t, testdb.SQLiteModernc)
	for _, p := range []string{"x; DROP TABLE y; --", "1abc", "a-b", "a.b"} {
		if _, err := store.Open(db.SQL(), db.Dialect(), store.Options{TablePrefix: p}); !errors.Is(err, store.ErrBadIdentifier) {
			t.Errorf("prefix %q: err = %v, want ErrBadIdentifier", p, err)
		}
	}
	if _, err := store.Open(db.SQL(), nil, store.Options{}); !errors.Is(err, store.ErrInvalidConfig) {
		t.Errorf("no dialect: err = %v, want ErrInvalidConfig", err)
	}
	if _, err := outbox.New(nil); !errors.Is(err, store.ErrInvalidConfig) {
		t.Errorf("nil store: err = %v, want ErrInvalidConfig", err)
	}
}
