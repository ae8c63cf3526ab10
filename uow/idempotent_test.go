package uow_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// TestIdempotencyKeyLimits guards the idempotency key: before, a key over
// 255 bytes reached the database (where MySQL's index cannot hold it and
// PostgreSQL and SQLite stored it) and one that is not valid UTF-8 reached
// a driver that could not store it as text. Now DoIdempotent refuses both
// with store.ErrInvalidConfig before beginning a transaction, so fn never
// runs and no key is recorded; a key of exactly 255 bytes is accepted.
func TestIdempotencyKeyLimits(t *testing.T) {
	t.Parallel()
	testdb.Each(t, func(t *testing.T, db testdb.DB) {
		t.Parallel()
		b := setup(t, db, uow.Config{})
		ctx := context.Background()
		for _, tc := range []struct {
			name, key, says string
		}{
			{"empty", "", "empty idempotency key"},
			{"256 bytes", strings.Repeat("k", 256), "256 bytes"},
			{"invalid UTF-8", "cmd-\xff\xfe", "UTF-8"},
		} {
			ran := false
			err := b.runner.DoIdempotent(ctx, tc.key, func(context.Context, *uow.Tx) error {
				ran = true
				return nil
			})
			if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s: err = %v, want ErrInvalidConfig saying %q", tc.name, err, tc.says)
			}
			if ran {
				t.Errorf("%s: fn ran", tc.name)
			}
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_idempotency"); n != 0 {
			t.Fatalf("idempotency keys recorded = %d, want 0", n)
		}

		longest := strings.Repeat("k", 255)
		runs := 0
		fn := func(context.Context, *uow.Tx) error { runs++; return nil }
		if err := b.runner.DoIdempotent(ctx, longest, fn); err != nil {
			t.Fatalf("255-byte key: %v", err)
		}
		if err := b.runner.DoIdempotent(ctx, longest, fn); !errors.Is(err, uow.ErrDuplicate) {
			t.Fatalf("255-byte key again: err = %v, want ErrDuplicate", err)
		}
		if runs != 1 {
			t.Errorf("fn ran %d times for one key, want 1", runs)
		}
		// key is a reserved word on MySQL, quoted there with backticks.
		keyCol := "key"
		if db.Setup.IsMySQL() {
			keyCol = "`key`"
		}
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM keel_idempotency WHERE "+keyCol+" = ?", longest); n != 1 {
			t.Errorf("rows for the 255-byte key = %d, want 1", n)
		}
	})
}
