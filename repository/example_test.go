package repository_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // driver "sqlite", pure Go

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/repository"
	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/sqlite"
)

// Wallet is an example aggregate: a struct embedding aggregate.Root.
type Wallet struct {
	aggregate.Root
	Balance int64 `json:"balance"`
}

// NewWallet is Wallet's constructor; it sets the aggregate's type and id.
func NewWallet(id string) *Wallet {
	w := &Wallet{}
	w.Init("wallet", id)
	return w
}

// exampleStore opens a SQLite database in a temporary directory, with the
// options keel recommends (sqlite.FileDSN), and creates keel's tables.
func exampleStore() (st *store.Store, cleanup func()) {
	dir, err := os.MkdirTemp("", "keel-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlite.FileDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	st, err = store.Open(db, sqlite.Dialect(), store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return st, func() { db.Close(); os.RemoveAll(dir) }
}

func ExampleNewDocument() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	db := st.DB()

	wallets, err := repository.NewDocument(st, repository.DocumentConfig[*Wallet]{
		Type: "wallet",
		New:  func() *Wallet { return new(Wallet) },
	})
	if err != nil {
		log.Fatal(err)
	}

	w := NewWallet("w1")
	w.Balance = 100
	if err := wallets.Save(ctx, db, w); err != nil {
		log.Fatal(err)
	}

	loaded, err := wallets.Get(ctx, db, "w1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(loaded.ID(), loaded.Version(), loaded.Balance)

	_, err = wallets.Get(ctx, db, "w2")
	fmt.Println(errors.Is(err, repository.ErrNotFound))
	// Output:
	// w1 1 100
	// true
}

func ExampleConflictError() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	db := st.DB()

	wallets, err := repository.NewDocument(st, repository.DocumentConfig[*Wallet]{
		Type: "wallet",
		New:  func() *Wallet { return new(Wallet) },
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := wallets.Save(ctx, db, NewWallet("w1")); err != nil {
		log.Fatal(err)
	}

	// Two requests load the same wallet at version 1.
	first, _ := wallets.Get(ctx, db, "w1")
	second, _ := wallets.Get(ctx, db, "w1")

	first.Balance += 10
	if err := wallets.Save(ctx, db, first); err != nil {
		log.Fatal(err)
	}
	second.Balance += 20
	err = wallets.Save(ctx, db, second)

	var conflict *repository.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println(errors.Is(err, repository.ErrConflict), conflict.Expected, conflict.Actual)
	}
	// Output:
	// true 1 2
}

// Person is an example aggregate stored in the application's own table.
type Person struct {
	aggregate.Root
	Name string
	SSN  string
}

func ExampleNewTable() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	db := st.DB()

	// The application owns this table and its unique constraint.
	if _, err := db.Exec(`CREATE TABLE people (
		id      TEXT PRIMARY KEY,
		version INTEGER NOT NULL,
		name    TEXT NOT NULL,
		ssn     TEXT NOT NULL UNIQUE)`); err != nil {
		log.Fatal(err)
	}
	people, err := repository.NewTable(st, repository.TableConfig[*Person]{
		Table:   "people",
		Type:    "person",
		New:     func() *Person { return new(Person) },
		Columns: []string{"name", "ssn"},
		Fields:  func(p *Person) []any { return []any{&p.Name, &p.SSN} },
	})
	if err != nil {
		log.Fatal(err)
	}

	register := func(id, name, ssn string) error {
		p := &Person{Name: name, SSN: ssn}
		p.Init("person", id)
		return people.Save(ctx, db, p)
	}
	fmt.Println(register("p1", "Ada", "123-45-6789"))

	err = register("p2", "Eve", "123-45-6789")
	var ce *repository.ConstraintError
	if errors.As(err, &ce) {
		fmt.Println(errors.Is(err, repository.ErrUniqueViolation), ce.Constraint)
	}
	// Output:
	// <nil>
	// true people.ssn
}

// unitOfWork stands in for the unit of work's transaction: a Querier that
// is also a Tracker.
type unitOfWork struct {
	*sql.Tx
	tracked []aggregate.Aggregate
}

func (u *unitOfWork) Track(a aggregate.Aggregate) { u.tracked = append(u.tracked, a) }

func ExampleTracker() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	db := st.DB()

	wallets, err := repository.NewDocument(st, repository.DocumentConfig[*Wallet]{
		Type: "wallet",
		New:  func() *Wallet { return new(Wallet) },
	})
	if err != nil {
		log.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	uow := &unitOfWork{Tx: tx}
	if err := wallets.Save(ctx, uow, NewWallet("w1")); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(uow.tracked), uow.tracked[0].ID())
	// Output:
	// 1 w1
}

// Car is an example aggregate whose columns come from db tags.
type Car struct {
	aggregate.Root
	Plate    string `db:"plate"`
	DriverID string `db:"driver_id"`
}

func ExampleTableConfig_structTags() {
	ctx := context.Background()
	st, cleanup := exampleStore()
	defer cleanup()
	db := st.DB()

	// One driver per car: driver_id is unique.
	if _, err := db.Exec(`CREATE TABLE cars (
		id        TEXT PRIMARY KEY,
		version   INTEGER NOT NULL,
		plate     TEXT NOT NULL,
		driver_id TEXT NOT NULL UNIQUE)`); err != nil {
		log.Fatal(err)
	}
	// Columns and Fields are left out: they come from the db tags.
	cars, err := repository.NewTable(st, repository.TableConfig[*Car]{
		Table: "cars",
		Type:  "car",
		New:   func() *Car { return new(Car) },
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		c := &Car{Plate: "KEEL-" + id, DriverID: "alice"}
		c.Init("car", id)
		err := cars.Save(ctx, db, c)
		fmt.Println(id, errors.Is(err, repository.ErrUniqueViolation))
	}
	c, err := cars.Get(ctx, db, "c1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Plate, c.DriverID, c.Version())
	// Output:
	// c1 false
	// c2 true
	// KEEL-c1 alice 1
}
