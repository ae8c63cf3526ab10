package process

import (
	"encoding/json"
	"time"

	"github.com/keel-go/keel/aggregate"
)

// Status is where a process is in its life.
type Status string

// A process is Running from its start until a handler calls Complete or
// Compensate. Completed and Compensated are final: a process that reached
// either absorbs every later event.
const (
	Running     Status = "running"
	Completed   Status = "completed"
	Compensated Status = "compensated"
)

// Timer is a timeout a process scheduled and has not yet seen arrive.
type Timer struct {
	// Name is the name the process gave the timer.
	Name string `json:"name"`
	// MessageID is the id of the scheduled message that carries it.
	MessageID string `json:"message_id"`
	// Due is when it falls due.
	Due time.Time `json:"due"`
}

// Step is something a process did that compensation undoes.
type Step struct {
	// Name is the name the process gave the step, such as "reserve stock".
	Name string `json:"name"`
	// Undo names the event sent to undo it.
	Undo string `json:"undo"`
	// Payload is the undo event, encoded.
	Payload json.RawMessage `json:"payload"`
	// Headers are the undo message's headers (its schema version).
	Headers map[string]string `json:"headers,omitempty"`
}

// instance is the stored form of one process: the application's state P
// beside the process's own bookkeeping, saved as one versioned aggregate.
type instance[P any] struct {
	aggregate.Root
	State  P       `json:"state"`
	Status Status  `json:"status"`
	Reason string  `json:"reason,omitempty"`
	Timers []Timer `json:"timers,omitempty"` // in the order scheduled
	Steps  []Step  `json:"steps,omitempty"`  // in the order done
	// Scheduled counts the timers ever scheduled, numbering their ids.
	Scheduled int64     `json:"scheduled"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// timer returns the index of the pending timer called name, or -1.
func (in *instance[P]) timer(name string) int {
	for i, t := range in.Timers {
		if t.Name == name {
			return i
		}
	}
	return -1
}
