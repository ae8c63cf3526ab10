package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
)

func TestEnqueue(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		ob, err := outbox.New(db, outbox.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.CheckSchema(ctx); err != nil {
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
		var n int
		var key, headers string
		if err := db.QueryRow("SELECT COUNT(*) FROM keel_outbox WHERE state = 0").Scan(&n); err != nil || n != 2 {
			t.Fatalf("pending rows = %d, %v; want 2", n, err)
		}
		if err := db.QueryRow("SELECT partition_key, headers FROM keel_outbox WHERE name = 'a'").Scan(&key, &headers); err != nil {
			t.Fatal(err)
		}
		if key != "k1" || headers != `{"traceparent":"00-x"}` {
			t.Fatalf("row = %q %q", key, headers)
		}
		// Rolled back with the caller's transaction.
		tx, _ := db.Begin()
		if err := ob.EnqueueTx(ctx, tx, outbox.Message{Name: "c", Payload: []byte{}}); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		_ = db.QueryRow("SELECT COUNT(*) FROM keel_outbox").Scan(&n)
		if n != 2 {
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
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			db := testdb.OpenEmpty(t, d)
			ob, err := outbox.New(db, outbox.Config{})
			if err != nil {
				t.Fatal(err)
			}
			err = ob.Enqueue(context.Background(), outbox.Message{Name: "a", Payload: []byte{}})
			if !errors.Is(err, outbox.ErrNotMigrated) {
				t.Fatalf("err = %v, want ErrNotMigrated", err)
			}
			if err := ob.CheckSchema(context.Background()); !errors.Is(err, outbox.ErrNotMigrated) {
				t.Fatalf("CheckSchema = %v", err)
			}
			if err := outbox.Migrate(context.Background(), db, outbox.Config{}); err != nil {
				t.Fatal(err)
			}
			if err := outbox.Migrate(context.Background(), db, outbox.Config{}); err != nil {
				t.Fatalf("second migrate: %v", err)
			}
			if err := ob.Enqueue(context.Background(), outbox.Message{Name: "a", Payload: []byte{}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBadPrefix(t *testing.T) {
	db := testdb.OpenEmpty(t, "sqlite")
	for _, p := range []string{"x; DROP TABLE y; --", "1abc", "a-b", "a.b"} {
		if _, err := outbox.New(db, outbox.Config{TablePrefix: p}); !errors.Is(err, outbox.ErrBadIdentifier) {
			t.Errorf("prefix %q: err = %v, want ErrBadIdentifier", p, err)
		}
	}
	if _, err := outbox.New(db, outbox.Config{Dialect: "oracle"}); err == nil {
		t.Error("unknown dialect accepted")
	}
}
