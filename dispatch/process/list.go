package process

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/store"
)

// ListOptions selects the processes List returns. The zero value lists
// the first 100 running processes.
type ListOptions struct {
	// All includes the processes that ended (completed or compensated).
	All bool
	// After continues a listing after the process with this id: pass the
	// last ID of the page before.
	After string
	// Limit bounds how many processes one call returns. If zero, 100.
	Limit int
}

// Info describes one stored process, for operators.
type Info struct {
	// Type is the process type's name (Config.Name).
	Type string
	// ID is the process's id.
	ID string
	// Version is the stored version: the number of deliveries that changed
	// the process.
	Version int64
	// Status is running, completed or compensated; Reason says why a
	// compensated process compensated.
	Status Status
	Reason string
	// State is the process's own state, as stored (JSON).
	State json.RawMessage
	// Timers are the pending timeouts, in the order scheduled; NextTimeout
	// is the earliest of them, zero when none is pending.
	Timers      []Timer
	NextTimeout time.Time
	// Steps are the steps recorded, in the order done.
	Steps []Step
	// StartedAt, UpdatedAt and EndedAt are when the process started, last
	// changed and ended (zero while it runs).
	StartedAt, UpdatedAt, EndedAt time.Time
}

// List returns the manager's processes (see the package-level List).
func (m *Manager[P]) List(ctx context.Context, opts ListOptions) ([]Info, error) {
	return List(ctx, m.st, m.name, opts)
}

// List returns the processes of the type called name in st, in id order:
// by default the running ones, with their state and next timeout, as
// Outbox.Parked lists parked messages. It reads pages of stored
// processes until it has opts.Limit or reaches the end, so listing only
// the running ones reads past the ended ones; it holds no locks.
func List(ctx context.Context, st *store.Store, name string, opts ListOptions) ([]Info, error) {
	if st == nil {
		return nil, dialect.Invalid("process.List: nil *store.Store; pass the store from store.Open")
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	switch {
	case opts.Limit < 0:
		return nil, dialect.Invalid("process.ListOptions.Limit is %d; use a positive number, or 0 for 100", opts.Limit)
	case opts.Limit == 0:
		opts.Limit = 100
	}
	d := st.Dialect()
	q := dialect.Render(d, d.SQL(), st.TablePrefix())
	typ := TypePrefix + name
	page := max(opts.Limit, 100)
	var out []Info
	after := opts.After
	for {
		rows, err := st.DB().QueryContext(ctx, q.AggregatesOfType, typ, after, page)
		if err != nil {
			return nil, fmt.Errorf("keel: list processes %s: %w", dialect.Quote(name), dialect.WrapMissing(d, err, st.Table("aggregates")))
		}
		n := 0
		for rows.Next() {
			n++
			var (
				in      instance[json.RawMessage]
				state   []byte
				updated dialect.Timestamp
			)
			info := Info{Type: name}
			if err := rows.Scan(&info.ID, &info.Version, &state, &updated); err != nil {
				rows.Close()
				return nil, fmt.Errorf("keel: list processes %s: %w", dialect.Quote(name), err)
			}
			after = info.ID
			if err := json.Unmarshal(state, &in); err != nil {
				rows.Close()
				return nil, fmt.Errorf("keel: list processes %s: process %s: %w", dialect.Quote(name), dialect.Quote(info.ID), err)
			}
			if in.Status != Running && !opts.All {
				continue
			}
			info.Status, info.Reason, info.State = in.Status, in.Reason, in.State
			info.Timers, info.Steps = in.Timers, in.Steps
			info.StartedAt, info.UpdatedAt, info.EndedAt = in.StartedAt, updated.Time, in.EndedAt
			for _, t := range in.Timers {
				if info.NextTimeout.IsZero() || t.Due.Before(info.NextTimeout) {
					info.NextTimeout = t.Due
				}
			}
			out = append(out, info)
			if len(out) == opts.Limit {
				break
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if len(out) == opts.Limit || n < page {
			return out, nil
		}
	}
}

// Types returns the names of the process types stored in st, in order.
func Types(ctx context.Context, st *store.Store) ([]string, error) {
	if st == nil {
		return nil, dialect.Invalid("process.Types: nil *store.Store; pass the store from store.Open")
	}
	d := st.Dialect()
	q := dialect.Render(d, d.SQL(), st.TablePrefix())
	rows, err := st.DB().QueryContext(ctx, q.AggregateTypesLike, TypePrefix+"%")
	if err != nil {
		return nil, fmt.Errorf("keel: list process types: %w", dialect.WrapMissing(d, err, st.Table("aggregates")))
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var typ string
		if err := rows.Scan(&typ); err != nil {
			return nil, err
		}
		names = append(names, strings.TrimPrefix(typ, TypePrefix))
	}
	return names, rows.Err()
}
