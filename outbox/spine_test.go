package outbox_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/dispatch"
	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/internal/testdb"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/uow"
)

// note is an aggregate, to instantiate the generic repository configs.
type note struct{ aggregate.Root }

// TestNoConfigRepeatsTheStore guards against the silent misconfiguration
// of keel before its store: a table prefix set on the unit of work's config
// and forgotten on the relay's made the relay read an empty table, and a
// Dialect or ListenDSN could disagree in the same way. These settings now
// live once, in store.Options; no Config may carry them again.
func TestNoConfigRepeatsTheStore(t *testing.T) {
	t.Parallel()
	for _, typ := range []reflect.Type{
		reflect.TypeFor[outbox.RelayConfig](),
		reflect.TypeFor[uow.Config](),
		reflect.TypeFor[repository.DocumentConfig[*note]](),
		reflect.TypeFor[repository.TableConfig[*note]](),
		reflect.TypeFor[dispatch.RouterConfig](),
		reflect.TypeFor[dispatch.BusConfig](),
		reflect.TypeFor[kafka.PublisherConfig](),
		reflect.TypeFor[kafka.ConsumerConfig](),
	} {
		for _, f := range reflect.VisibleFields(typ) {
			switch f.Name {
			case "Dialect", "TablePrefix", "ListenDSN", "DisableNotify":
				t.Errorf("%s has a field %s; it belongs to store.Options alone", typ, f.Name)
			}
		}
	}
}

// TestUnitsWakeRelayOfTheirStore guards the other half of that
// misconfiguration: units of work committed through a Runner of a store
// with a table prefix reach a relay of the same store, with no AfterCommit
// hook, and at once. Before, both had to be given the prefix, and the relay
// was woken only by a hook the application had to register; without it, it
// found the rows at its next poll.
func TestUnitsWakeRelayOfTheirStore(t *testing.T) {
	eachSetup(t, func(t *testing.T, s testdb.Setup) {
		ctx := context.Background()
		// No Listener and no notification: only the in-process wake-up can
		// reach the relay, which polls hourly.
		db := testdb.Open(t, s, quietOptions(store.Options{TablePrefix: "app_", DisableNotify: true}))
		runner, err := uow.New(db.Store, uow.Config{})
		if err != nil {
			t.Fatal(err)
		}
		rec := idleRelay(t, db.Store, nil)
		for i := range 3 {
			err := runner.Do(ctx, func(ctx context.Context, tx *uow.Tx) error {
				tx.Enqueue(outbox.Message{Name: "note.written", Key: "n", AggregateVersion: int64(i + 1), Payload: []byte{}})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			testdb.Eventually(t, 5*time.Second, "the unit's message to be delivered", func() bool { return rec.count() == i+1 })
		}
		if dups := checkOrder(t, rec.messages()); dups != 0 {
			t.Fatalf("%d duplicates", dups)
		}
		testdb.Eventually(t, 5*time.Second, "the relay to delete the delivered rows from app_outbox", func() bool {
			return testdb.Count(t, db, "SELECT COUNT(*) FROM app_outbox") == 0
		})
	})
}
