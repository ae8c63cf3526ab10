package console_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"

	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/outbox/console"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
)

// The console mounted under /ops/keel/ on an application's server. A
// message the destination rejected is parked; the parked page lists its
// key, and the message's page shows it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keel-console-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	quiet := slog.New(slog.DiscardHandler)
	st, err := store.Open(db, sqlite.Dialect(), store.Options{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	// One message, rejected for good by the destination: it is parked.
	ob, err := outbox.New(st)
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Enqueue(ctx, outbox.Message{ID: "msg-1", Key: "order-7", Name: "order.paid", Payload: []byte(`{"total":1250}`)}); err != nil {
		log.Fatal(err)
	}
	reject := outbox.PublisherFunc(func(context.Context, []outbox.Message) error {
		return fmt.Errorf("schema registry: unknown field: %w", outbox.ErrPermanent)
	})
	relay, err := outbox.NewRelay(st, reject, outbox.RelayConfig{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := relay.Drain(ctx); err != nil {
		log.Fatal(err)
	}

	// Mount the console; in an application, behind its authentication.
	con, err := console.New(st, console.Options{Title: "orders", Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/keel/", http.StripPrefix("/ops/keel", con))

	get := func(path string) string {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return fmt.Sprint(rec.Code)
	}
	fmt.Println("overview:", get("/ops/keel/"))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ops/keel/parked", nil))
	key := regexp.MustCompile(`<tr data-key="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	fmt.Println("parked key:", key[1])
	fmt.Println("message page:", get("/ops/keel/message?id=msg-1"))
	fmt.Println("unknown message:", get("/ops/keel/message?id=msg-2"))
	// Output:
	// overview: 200
	// parked key: order-7
	// message page: 200
	// unknown message: 404
}
