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

	// StateVersion is the version of the shape T's JSON encoding has now.
	// Every save stores it beside the state; raise it by one whenever a
	// change to T would misread state saved before (a field renamed,
	// split, or given a new unit), and add the migration from the previous
	// version to Migrations. If zero, 1.
	StateVersion int
	// Migrations bring stored state to the next version: Migrations[v]
	// turns the JSON state of version v into that of version v+1. Get
	// applies them in order to state saved at an older version, before
	// decoding it into T, and the next Save stores the aggregate in the
	// current shape; rows are never rewritten in bulk. Keys must lie in
	// [1, StateVersion).
	Migrations map[int]func(state []byte) ([]byte, error)
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
	mig, err := newStateMigrations(cfg.Type, cfg.StateVersion, cfg.Migrations)
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
		return append(args, string(state), mig.current, now), nil
	}
	c.insertOnly = func(args []any, now any) []any { return append(args, now) }
	c.scan = func(a T) ([]any, func() error) {
		var (
			state   sql.RawBytes // decoded before the rows close, so never copied
			version int
		)
		return []any{&state, &version}, func() error {
			b, err := mig.apply(version, state)
			if err != nil {
				return err
			}
			return json.Unmarshal(b, a)
		}
	}
	// ON CONFLICT DO NOTHING (or its dialect's equivalent) turns a taken id
	// into a conflict rather than an error, which on PostgreSQL would abort
	// the caller's transaction before the conflict could be reported.
	c.build(table{
		name:       st.Table("aggregates"),
		key:        []string{"aggregate_type", "aggregate_id"},
		version:    "version",
		columns:    []string{"state", "state_version"},
		touch:      []string{"updated_at"},
		insertOnly: []string{"created_at"},
	})
	return &Document[T]{core: c}, nil
}
