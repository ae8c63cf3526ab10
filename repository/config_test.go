package repository_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/repository"
)

func newAccountFunc() *Account { return new(Account) }

func accountFields(a *Account) []any { return []any{&a.Owner, &a.Balance} }

func TestDocumentConfig(t *testing.T) {
	db := testdb.OpenEmpty(t, "sqlite")
	for name, tc := range map[string]struct {
		cfg  repository.DocumentConfig[*Account]
		want string
	}{
		"no type":     {repository.DocumentConfig[*Account]{New: newAccountFunc}, "DocumentConfig.Type"},
		"no new":      {repository.DocumentConfig[*Account]{Type: "account"}, "DocumentConfig.New"},
		"bad prefix":  {repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc, TablePrefix: "x; DROP TABLE y; --"}, "TablePrefix"},
		"bad dialect": {repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc, Dialect: "oracle"}, "oracle"},
	} {
		_, err := repository.NewDocument(db, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
	if _, err := repository.NewDocument(db, repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc, TablePrefix: "app_"}); err != nil {
		t.Errorf("valid prefix: %v", err)
	}
}

func TestTableConfig(t *testing.T) {
	db := testdb.OpenEmpty(t, "sqlite")
	valid := func() repository.TableConfig[*Account] {
		return repository.TableConfig[*Account]{
			Table: "accounts", Type: "account", New: newAccountFunc,
			Columns: []string{"owner", "balance"}, Fields: accountFields,
		}
	}
	if _, err := repository.NewTable(db, valid()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	schema := valid()
	schema.Table = "bank.accounts"
	if _, err := repository.NewTable(db, schema); err != nil {
		t.Fatalf("schema-qualified table: %v", err)
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
		_, err := repository.NewTable(db, cfg)
		if err == nil {
			t.Errorf("table %q accepted", name)
		} else if name != "" && !errors.Is(err, repository.ErrBadIdentifier) {
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
		_, err := repository.NewTable(db, cfg)
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
	_, err := repository.NewTable(db, repository.TableConfig[*untagged]{
		Table: "things", Type: "thing", New: func() *untagged { return new(untagged) },
	})
	if err == nil || !strings.Contains(err.Error(), "db:") {
		t.Errorf("untagged struct: err = %v", err)
	}
}

func TestNotMigrated(t *testing.T) {
	for _, name := range databases {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := openEmpty(t, name)
			doc, err := repository.NewDocument(db, repository.DocumentConfig[*Account]{Type: "account", New: newAccountFunc})
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := repository.NewTable(db, repository.TableConfig[*Account]{
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
				{"document", doc, "outbox.Migrate"},
				{"table", tbl, "application's migrations"},
			} {
				_, err := k.repo.Get(ctx, db, "a1")
				if !errors.Is(err, repository.ErrNotMigrated) || !strings.Contains(err.Error(), k.hint) {
					t.Errorf("%s Get = %v, want ErrNotMigrated mentioning %q", k.name, err, k.hint)
				}
				err = k.repo.Save(ctx, db, newAccount("a1", "Ada"))
				if !errors.Is(err, repository.ErrNotMigrated) {
					t.Errorf("%s Save = %v, want ErrNotMigrated", k.name, err)
				}
				if _, err := k.repo.Exists(ctx, db, "a1"); !errors.Is(err, repository.ErrNotMigrated) {
					t.Errorf("%s Exists = %v, want ErrNotMigrated", k.name, err)
				}
			}
		})
	}
}
