//go:build !cgo

package demo

import _ "modernc.org/sqlite" // driver "sqlite"

// SQLiteDriver is the database/sql driver the examples open SQLite with:
// modernc.org/sqlite, in pure Go, when cgo is disabled.
const SQLiteDriver = "sqlite"
