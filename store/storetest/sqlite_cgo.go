//go:build cgo

package storetest

import _ "github.com/mattn/go-sqlite3" // driver "sqlite3"

// SQLiteDriver is the database/sql driver Open uses for SQLite:
// mattn/go-sqlite3 in a binary built with cgo.
const SQLiteDriver = "sqlite3"
