//go:build cgo

package demo

import _ "github.com/mattn/go-sqlite3" // driver "sqlite3"

// SQLiteDriver is the database/sql driver the examples open SQLite with:
// mattn/go-sqlite3 when cgo is enabled.
const SQLiteDriver = "sqlite3"
