package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/keel-go/keel/internal/dialect"
	"github.com/keel-go/keel/store"
)

// Processed is one inbox row: a handler that applied a message.
type Processed struct {
	// Handler is the handler's name, as given to Handle.
	Handler string
	// At is when the handler's transaction committed the inbox row.
	At time.Time
}

// ProcessedBy lists, in handler name order, the handlers of any router of
// st that have applied the message with the given id: those a redelivery
// of it would skip. It returns an empty list for a message no handler has
// applied, or whose inbox rows were pruned (see Router.PruneInbox). It needs
// no Router, so operations tools can answer "did this message take effect?"
// from the store alone.
func ProcessedBy(ctx context.Context, st *store.Store, messageID string) ([]Processed, error) {
	if st == nil {
		return nil, dialect.Invalid("dispatch.ProcessedBy: nil *store.Store; pass the store from store.Open")
	}
	d := st.Dialect()
	table := st.Table("inbox")
	q := dialect.Render(d, d.SQL(), st.TablePrefix()).InboxByMessage
	rows, err := st.DB().QueryContext(ctx, q, messageID)
	if err != nil {
		return nil, fmt.Errorf("keel: read inbox: %w", dialect.WrapMissing(d, err, table))
	}
	defer rows.Close()
	var out []Processed
	for rows.Next() {
		var (
			p  Processed
			at dialect.Timestamp
		)
		if err := rows.Scan(&p.Handler, &at); err != nil {
			return nil, fmt.Errorf("keel: read inbox: %w", err)
		}
		p.At = at.Time
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keel: read inbox: %w", dialect.WrapMissing(d, err, table))
	}
	return out, nil
}
