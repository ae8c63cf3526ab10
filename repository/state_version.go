package repository

import (
	"errors"
	"fmt"

	"github.com/keel-go/keel/internal/dialect"
)

// ErrStateVersion is matched (errors.Is) by the error of a Get that found
// state it cannot bring to the repository's StateVersion: saved at an
// older version with no migration to the next, or at a newer version than
// this release knows.
var ErrStateVersion = errors.New("keel: stored state version")

// stateMigrations is a Document's current state version and the chain that
// leads to it.
type stateMigrations struct {
	current int
	steps   map[int]func([]byte) ([]byte, error)
}

func newStateMigrations(typ string, current int, steps map[int]func([]byte) ([]byte, error)) (stateMigrations, error) {
	if current == 0 {
		current = 1
	}
	if current < 0 {
		return stateMigrations{}, dialect.Invalid("DocumentConfig.StateVersion of %s is %d; versions start at 1 (0 means 1)", dialect.Quote(typ), current)
	}
	for v, fn := range steps {
		if v < 1 || v >= current {
			return stateMigrations{}, dialect.Invalid("DocumentConfig.Migrations of %s has a migration from version %d, outside [1, StateVersion %d); key each migration by the version it migrates from", dialect.Quote(typ), v, current)
		}
		if fn == nil {
			return stateMigrations{}, dialect.Invalid("DocumentConfig.Migrations of %s: the migration from version %d is nil", dialect.Quote(typ), v)
		}
	}
	return stateMigrations{current: current, steps: steps}, nil
}

// apply brings state saved at version v to the current version.
func (m stateMigrations) apply(v int, state []byte) ([]byte, error) {
	if v > m.current {
		return nil, fmt.Errorf("%w: state saved at version %d by a newer release, but this repository's StateVersion is %d: deploy the release that knows version %d", ErrStateVersion, v, m.current, v)
	}
	for ; v < m.current; v++ {
		fn, ok := m.steps[v]
		if !ok {
			return nil, fmt.Errorf("%w: state saved at version %d, but this repository's StateVersion is %d and DocumentConfig.Migrations has no migration from version %d to %d", ErrStateVersion, v, m.current, v, v+1)
		}
		out, err := fn(state)
		if err != nil {
			return nil, fmt.Errorf("keel: migrate state from version %d to %d: %w", v, v+1, err)
		}
		state = out
	}
	return state, nil
}
