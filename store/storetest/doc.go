// Package storetest gives an application's tests a fresh database with
// keel's tables, in one call:
//
//	func TestPlaceOrder(t *testing.T) {
//		st := storetest.Open(t) // migrated, removed when the test ends
//		runner, err := uow.New(st, uow.Config{})
//		...
//	}
//
// The name follows net/http/httptest: the package that tests code built on
// package store sits beside it, under store/, and an application imports it
// only from its _test.go files.
//
// # Which database
//
// By default the database is a SQLite file in the test's temporary
// directory, opened with sqlite.DSNOptions, the options keel recommends
// (write-ahead log, a busy timeout, immediate transactions). SQLite goes
// through mattn/go-sqlite3 when the test binary is built with cgo, and
// through modernc.org/sqlite, which is pure Go, without.
//
// When the environment variable KEEL_TEST_POSTGRES holds a PostgreSQL URL,
// such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable, each
// test gets a schema of its own in that database instead, selected through
// search_path and dropped with everything in it when the test ends. The
// connection goes through pgx (a pgxpool wrapped by stdlib.OpenDBFromPool),
// with a pgxlisten listener waking relays at once.
//
// When KEEL_TEST_MYSQL holds a MySQL or MariaDB data source name in
// go-sql-driver/mysql's form, such as root@tcp(127.0.0.1:3306)/test, and
// KEEL_TEST_POSTGRES is unset, each test gets a database of its own
// (utf8mb4, binary collation), opened with mysql.DSNOptions and dropped when
// the test ends.
//
// Config.Dialect picks one dialect whatever the environment says; a test
// that asks for PostgreSQL or MySQL whose variable is unset is skipped,
// with a message naming the variable. Each runs a test once per dialect the
// environment offers.
//
// Because every test owns its database, tests using the package can call
// t.Parallel.
package storetest
