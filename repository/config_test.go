package repository_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
)

func newAccountFunc() *Account { return new(Account) }

func accountFields(a *Account) []any { return []any{&a.Owner, &a.Balance} }

func TestDocumentConfig(t *testing.T) {
	t.Parallel()
	db := testdb.OpenEmpty(t, testdb.SQLiteModernc)
	for name, tc := range map[string]struct {
		st   *store.Store
		cfg  repository.DocumentConfig[*Account]
		want string
	}{
		"no store":   {nil, repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc}, "store.Open"},
		"no type":    {db.Store, repository.DocumentConfig[*Account]{New: newAccountFunc}, "DocumentConfig.Type"},
		"no new":     {db.Store, repository.DocumentConfig[*Account]{Type: "account"}, "DocumentConfig.New"},
		"long type":  {db.Store, repository.DocumentConfig[*Account]{Type: strings.Repeat("t", 256), New: newAccountFunc}, "256 bytes"},
		"UTF-8 type": {db.Store, repository.DocumentConfig[*Account]{Type: "acc\xffount", New: newAccountFunc}, "UTF-8"},
	} {
		_, err := repository.NewDocument(tc.st, tc.cfg)
		if !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig mentioning %q", name, err, tc.want)
		}
	}
}

// TestDocumentTablePrefix checks that a Document repository writes to the
// aggregates table of its store's prefix.
func TestDocumentTablePrefix(t *testing.T) {
	t.Parallel()
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		t.Parallel()
		ctx := context.Background()
		db := testdb.OpenEmpty(t, s, store.Options{TablePrefix: "app_", Logger: testdb.Logger()})
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		repo, err := repository.NewDocument(db.Store, repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc})
		if err != nil {
			t.Fatal(err)
		}
		mustSave(t, repo, db.SQL(), newAccount("a1", "Ada"))
		if n := testdb.Count(t, db, "SELECT COUNT(*) FROM app_aggregates WHERE aggregate_id = ?", "a1"); n != 1 {
			t.Fatalf("app_aggregates rows = %d, want 1", n)
		}
		if got := mustGet(t, repo, db.SQL(), "a1"); got.Owner != "Ada" {
			t.Fatalf("owner = %q, want Ada", got.Owner)
		}
	})
}

func TestTableConfig(t *testing.T) {
	t.Parallel()
	db := testdb.OpenEmpty(t, testdb.SQLiteModernc)
	valid := func() repository.TableConfig[*Account] {
		return repository.TableConfig[*Account]{
			Table: "accounts", Type: "account", New: newAccountFunc,
			Columns: []string{"owner", "balance"}, Fields: accountFields,
		}
	}
	if _, err := repository.NewTable(db.Store, valid()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	schema := valid()
	schema.Table = "bank.accounts"
	if _, err := repository.NewTable(db.Store, schema); err != nil {
		t.Fatalf("schema-qualified table: %v", err)
	}
	if _, err := repository.NewTable(nil, valid()); !errors.Is(err, store.ErrInvalidConfig) || !strings.Contains(err.Error(), "store.Open") {
		t.Errorf("nil store: err = %v, want ErrInvalidConfig naming store.Open", err)
	}

	injection := []string{
		"accounts; DROP TABLE drivers; --",
		"accounts WHERE 1=1",
		`"accounts"`,
		"a.b.c",
		"1accounts",
		"",
	}
	for _, name := range injection {
		cfg := valid()
		cfg.Table = name
		_, err := repository.NewTable(db.Store, cfg)
		if err == nil {
			t.Errorf("table %q accepted", name)
		} else if name != "" && !errors.Is(err, store.ErrBadIdentifier) {
			t.Errorf("table %q: err = %v, want ErrBadIdentifier", name, err)
		}
	}

	for name, tc := range map[string]struct {
		edit func(*repository.TableConfig[*Account])
		want string
	}{
		"no type":          {func(c *repository.TableConfig[*Account]) { c.Type = "" }, "TableConfig.Type"},
		"no new":           {func(c *repository.TableConfig[*Account]) { c.New = nil }, "TableConfig.New"},
		"bad id column":    {func(c *repository.TableConfig[*Account]) { c.IDColumn = "id = id OR 1" }, "TableConfig.IDColumn"},
		"bad version":      {func(c *repository.TableConfig[*Account]) { c.VersionColumn = "v;" }, "TableConfig.VersionColumn"},
		"bad column":       {func(c *repository.TableConfig[*Account]) { c.Columns[1] = "balance--" }, "TableConfig.Columns[1]"},
		"repeated column":  {func(c *repository.TableConfig[*Account]) { c.Columns[1] = "OWNER" }, "repeats"},
		"id among columns": {func(c *repository.TableConfig[*Account]) { c.Columns[0] = "id" }, "repeats"},
		"no fields":        {func(c *repository.TableConfig[*Account]) { c.Fields = nil }, "TableConfig.Fields is nil"},
		"too few fields": {func(c *repository.TableConfig[*Account]) {
			c.Fields = func(a *Account) []any { return []any{&a.Owner} }
		}, "1 pointers for 2 Columns"},
		"not a pointer": {func(c *repository.TableConfig[*Account]) {
			c.Fields = func(a *Account) []any { return []any{&a.Owner, a.Balance} }
		}, "index 1"},
		"nil new": {func(c *repository.TableConfig[*Account]) {
			c.New = func() *Account { return nil }
		}, "returned nil"},
	} {
		cfg := valid()
		tc.edit(&cfg)
		_, err := repository.NewTable(db.Store, cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}

	// Without Columns and Fields, the struct's db tags are used; a type
	// without any is refused.
	type untagged struct {
		aggregate.Root
		Name string
	}
	_, err := repository.NewTable(db.Store, repository.TableConfig[*untagged]{
		Table: "things", Type: "thing", New: func() *untagged { return new(untagged) },
	})
	if err == nil || !strings.Contains(err.Error(), "db:") {
		t.Errorf("untagged struct: err = %v", err)
	}
}

func TestNotMigrated(t *testing.T) {
	t.Parallel()
	testdb.EachSetup(t, func(t *testing.T, s testdb.Setup) {
		t.Parallel()
		ctx := context.Background()
		db := testdb.OpenEmpty(t, s)
		doc, err := repository.NewDocument(db.Store, repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc})
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := repository.NewTable(db.Store, repository.TableConfig[*Account]{
			Table: "accounts", Type: "account", New: newAccountFunc,
			Columns: []string{"owner", "balance"}, Fields: accountFields,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []struct {
			name string
			repo repository.Repository[*Account]
			hint string
		}{
			{"document", doc, "Store.Migrate"},
			{"table", tbl, "application's migrations"},
		} {
			_, err := k.repo.Get(ctx, db.SQL(), "a1")
			if !errors.Is(err, store.ErrNotMigrated) || !strings.Contains(err.Error(), k.hint) {
				t.Errorf("%s Get = %v, want ErrNotMigrated mentioning %q", k.name, err, k.hint)
			}
			err = k.repo.Save(ctx, db.SQL(), newAccount("a1", "Ada"))
			if !errors.Is(err, store.ErrNotMigrated) {
				t.Errorf("%s Save = %v, want ErrNotMigrated", k.name, err)
			}
			if _, err := k.repo.Exists(ctx, db.SQL(), "a1"); !errors.Is(err, store.ErrNotMigrated) {
				t.Errorf("%s Exists = %v, want ErrNotMigrated", k.name, err)
			}
		}
	})
}
