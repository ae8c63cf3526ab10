module github.com/keel-go/keel

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	github.com/lib/pq v1.12.3
	github.com/mattn/go-sqlite3 v1.14.53
)

require github.com/google/go-cmp v0.7.0 // indirect
