package repository_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keel-go/keel/internal/aggstate"
	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

// TestInvalidID guards the id limits: before, a 10,000-character id went
// to the database and came back quoted whole in the error message, and an
// id that is not valid UTF-8 reached a driver that could not store it.
// Now Get, GetForUpdate, Exists, Save and Delete refuse both with
// ErrInvalidID and a short message that does not carry the id.
func TestInvalidID(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		q := db.SQL()
		for _, id := range []string{
			strings.Repeat("x", 10_000),
			strings.Repeat("y", dialect.MaxKeyBytes+1),
			"acc-\xff\xfe",
		} {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, repository.ErrInvalidID) {
					t.Errorf("%s(%s) = %v, want ErrInvalidID", op, dialect.Quote(id), err)
					return
				}
				msg := err.Error()
				if len(msg) >= 300 {
					t.Errorf("%s(%s): message is %d bytes: %s", op, dialect.Quote(id), len(msg), msg)
				}
				if len(id) > 64 && strings.Contains(msg, id[:65]) {
					t.Errorf("%s(%s): message quotes more than 64 bytes of the id: %s", op, dialect.Quote(id), msg)
				}
			}
			_, err := repo.Get(ctx, q, id)
			check("Get", err)
			_, err = repo.GetForUpdate(ctx, q, id)
			check("GetForUpdate", err)
			_, err = repo.Exists(ctx, q, id)
			check("Exists", err)
			check("Save", repo.Save(ctx, q, newAccount(id, "Ada")))
			check("Delete", repo.Delete(ctx, q, newAccount(id, "Ada")))
			// As if loaded at version 1: the update and versioned delete
			// paths check the id too.
			loaded := newAccount(id, "Ada")
			aggstate.SetVersion(loaded, 1)
			check("Save", repo.Save(ctx, q, loaded))
			check("Delete", repo.Delete(ctx, q, loaded))
		}
		// The longest valid id is stored.
		longest := strings.Repeat("z", dialect.MaxKeyBytes)
		mustSave(t, repo, q, newAccount(longest, "Ada"))
		if got := mustGet(t, repo, q, longest); got.ID() != longest {
			t.Fatalf("loaded id of %d bytes, want %d", len(got.ID()), len(longest))
		}
	})
}

// TestLongIDInErrors guards error messages against huge ids: a
// ConflictError or a not-found error for a valid 500-byte id quotes it
// cut to its first 64 bytes and its length (dialect.Quote), while
// ConflictError.ID still holds the whole id.
func TestLongIDInErrors(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		ctx := context.Background()
		q := db.SQL()
		id := strings.Repeat("a", 436) + strings.Repeat("b", 64) // 500 bytes
		quoted := dialect.Quote(id)
		cut := func(op string, err error) {
			t.Helper()
			msg := err.Error()
			if !strings.Contains(msg, quoted) || !strings.Contains(msg, "500 bytes") {
				t.Errorf("%s: message %q does not quote the id as %s", op, msg, quoted)
			}
			if strings.Contains(msg, id[:65]) || len(msg) >= 300 {
				t.Errorf("%s: message of %d bytes quotes more than 64 bytes of the id", op, len(msg))
			}
		}

		_, err := repo.Get(ctx, q, id)
		if !errors.Is(err, repository.ErrNotFound) {
			t.Fatalf("Get = %v, want ErrNotFound", err)
		}
		cut("Get", err)
		err = repo.Delete(ctx, q, newAccount(id, "Ada"))
		if !errors.Is(err, repository.ErrNotFound) {
			t.Fatalf("Delete of a new aggregate = %v, want ErrNotFound", err)
		}
		cut("Delete", err)

		mustSave(t, repo, q, newAccount(id, "Ada"))
		err = repo.Save(ctx, q, newAccount(id, "Bob"))
		wantConflict(t, err, id, 0, 1)
		cut("Save", err)
		stale := mustGet(t, repo, q, id)
		fresh := mustGet(t, repo, q, id)
		fresh.Balance = 7
		mustSave(t, repo, q, fresh)
		err = repo.Delete(ctx, q, stale)
		wantConflict(t, err, id, 1, 2)
		cut("Delete", err)
	})
}

// TestIDsCompareExactly checks that ids are compared byte for byte: ids
// that differ only in case or in trailing spaces are different aggregates,
// each saved and loaded on its own.
func TestIDsCompareExactly(t *testing.T) {
	t.Parallel()
	eachKind(t, func(t *testing.T, db testdb.DB, repo repository.Repository[*Account]) {
		q := db.SQL()
		ids := []string{"acc-1", "Acc-1", "acc-1 ", "acc-1  "}
		for _, id := range ids {
			mustSave(t, repo, q, newAccount(id, "owner of "+dialect.Quote(id)))
		}
		for _, id := range ids {
			got := mustGet(t, repo, q, id)
			if want := "owner of " + dialect.Quote(id); got.ID() != id || got.Owner != want {
				t.Errorf("Get(%s) = %s owned by %q, want %q", dialect.Quote(id), dialect.Quote(got.ID()), got.Owner, want)
			}
		}
	})
}
