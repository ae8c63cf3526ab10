//go:build !cgo

package storetest

import _ "modernc.org/sqlite" // driver "sqlite"

// SQLiteDriver is the database/sql driver Open uses for SQLite:
// modernc.org/sqlite, which is pure Go, in a binary built without cgo.
const SQLiteDriver = "sqlite"
