package outbox

import (
	"errors"

	"github.com/keel-go/keel/internal/dialect"
)

// ErrNotMigrated is returned when keel's tables are missing or out of date.
// Run Migrate. It is the same value as repository.ErrNotMigrated and
// uow.ErrNotMigrated.
var ErrNotMigrated = dialect.ErrNotMigrated

// ErrInvalidMessage is returned by Enqueue for a message missing a required field.
var ErrInvalidMessage = errors.New("keel: invalid outbox message")

// ErrInvalidConfig is wrapped by NewRelay for a RelayConfig field with a
// value it cannot use; the message names the field and the fix.
var ErrInvalidConfig = errors.New("keel: invalid relay configuration")

// ErrNotParked is returned by Requeue for a message id that is not parked.
var ErrNotParked = errors.New("keel: outbox message is not parked")

// ErrBadIdentifier is returned for a table name or prefix that is not a
// plain SQL identifier.
var ErrBadIdentifier = dialect.ErrBadIdentifier
