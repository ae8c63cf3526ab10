package repository

import (
	"database/sql"
	"encoding/json"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/store"
)

// DocumentConfig configures a Document repository. Type and New are
// required.
type DocumentConfig[T aggregate.Aggregate] struct {
	// Type is the aggregate type name, as passed to aggregate.Root.Init,
	// such as "account". Rows are keyed by type and id, so one table holds
	// every aggregate type. Required; at most 255 bytes.
	Type string
	// New returns an empty aggregate for Get to decode into, such as
	// func() *Account { return new(Account) }. Required.
	New func() T
}

// Document is a repository that stores each aggregate as a JSON document in
// keel's aggregates table, which Store.Migrate creates. The aggregate
// struct is encoded with encoding/json: its exported fields (or its
// MarshalJSON result) are the stored state, and the embedded
// aggregate.Root, whose fields are unexported, is not stored; the id and
// version live in their own columns. A Document is safe for concurrent use.
type Document[T aggregate.Aggregate] struct {
	core[T]
}

// NewDocument returns a Document repository for aggregates of type T in
// st's aggregates table. It checks cfg and builds its statements but does
// not touch the database: a missing table is reported by the first call
// that uses it, as an error matching store.ErrNotMigrated.
func NewDocument[T aggregate.Aggregate](st *store.Store, cfg DocumentConfig[T]) (*Document[T], error) {
	c, err := newCore(st, cfg.Type, cfg.New, "DocumentConfig")
	if err != nil {
		return nil, err
	}
	c.keelTable = true
	c.keyArgs = func(id string) []any { return []any{c.typArg, id} }
	c.values = func(args []any, a T, now any) ([]any, error) {
		state, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		return append(args, string(state), now), nil
	}
	c.insertOnly = func(args []any, now any) []any { return append(args, now) }
	c.scan = func(a T) ([]any, func() error) {
		var state sql.RawBytes // decoded before the rows close, so never copied
		return []any{&state}, func() error { return json.Unmarshal(state, a) }
	}
	// ON CONFLICT DO NOTHING (or its dialect's equivalent) turns a taken id
	// into a conflict rather than an error, which on PostgreSQL would abort
	// the caller's transaction before the conflict could be reported.
	c.build(table{
		name:       st.Table("aggregates"),
		key:        []string{"aggregate_type", "aggregate_id"},
		version:    "version",
		columns:    []string{"state"},
		touch:      []string{"updated_at"},
		insertOnly: []string{"created_at"},
	})
	return &Document[T]{core: c}, nil
}
