package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // driver "sqlite", pure Go: keel builds without cgo

	"github.com/keel-go/keel/store"
	"github.com/keel-go/keel/store/mysql"
	"github.com/keel-go/keel/store/postgres"
	"github.com/keel-go/keel/store/postgres/pgxlisten"
	"github.com/keel-go/keel/store/sqlite"
)

const dsnForms = "postgres://user@host:5432/db, mysql://user:password@host:3306/db, sqlite:PATH or a file path"

// openMode says what openDSN may do with the database.
type openMode int

const (
	// existing connects to a database that must exist: a SQLite file must
	// be there, so that a mistyped path is an error, not a new database.
	existing openMode = iota
	// creating connects, creating a SQLite file if needed (migrate).
	creating
	// offline connects to nothing; the store serves its dialect's SQL only
	// (migrate --print).
	offline
)

// openDSN opens the database a DSN names with the dialect it implies and,
// unless mode is offline, checks that it answers.
func openDSN(ctx context.Context, dsn string, opts store.Options, mode openMode) (*store.Store, func(), error) {
	dsn = strings.TrimSpace(dsn)
	var (
		db      *sql.DB
		d       store.Dialect
		closeDB = func() {}
		what    string
	)
	switch {
	case dsn == "":
		return nil, nil, usagef("no database given; pass --dsn or set KEEL_DSN (%s)", dsnForms)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("bad PostgreSQL DSN: %v; write it as postgres://user:password@host:5432/db?sslmode=disable", redactErr(err, dsn))
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("open PostgreSQL: %v", redactErr(err, dsn))
		}
		db = stdlib.OpenDBFromPool(pool)
		closeDB = func() { db.Close(); pool.Close() }
		d, what = postgres.Dialect(), "PostgreSQL at "+cfg.ConnConfig.Host
		opts.Listener = pgxlisten.New(db)
	case strings.HasPrefix(dsn, "mysql://"):
		native, err := mysqlDSN(dsn)
		if err != nil {
			return nil, nil, err
		}
		if db, err = sql.Open("mysql", native); err != nil {
			return nil, nil, fmt.Errorf("open MySQL: %v", err)
		}
		closeDB = func() { db.Close() }
		d, what = mysql.Dialect(), "MySQL"
	default:
		path, query, err := sqlitePath(dsn)
		if err != nil {
			return nil, nil, err
		}
		if mode == existing {
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("no SQLite database at %s; check --dsn, or create it with 'keel migrate'", path)
			}
		}
		native := sqlite.FileDSN(path)
		if query != "" {
			native = "file:" + path + "?" + query // the caller's own options
		}
		if db, err = sql.Open("sqlite", native); err != nil {
			return nil, nil, fmt.Errorf("open SQLite: %v", err)
		}
		closeDB = func() { db.Close() }
		d, what = sqlite.Dialect(), "SQLite at "+path
	}
	if mode == offline {
		// Nothing is sent to the server: database/sql connects lazily.
	} else if err := db.PingContext(ctx); err != nil {
		closeDB()
		return nil, nil, fmt.Errorf("cannot reach %s: %v; check --dsn and that the server is up", what, redactErr(err, dsn))
	}
	st, err := store.Open(db, d, opts)
	if err != nil {
		closeDB()
		return nil, nil, err
	}
	return st, closeDB, nil
}

// sqlitePath returns the file a SQLite DSN names ("sqlite:PATH",
// "sqlite://PATH", "file:PATH" or a plain path) and its options, if it has
// any; without options keel uses sqlite.DSNOptions.
func sqlitePath(dsn string) (path, query string, err error) {
	path = dsn
	for _, p := range []string{"sqlite://", "sqlite:", "file:"} {
		if strings.HasPrefix(dsn, p) {
			path = strings.TrimPrefix(dsn, p)
			break
		}
	}
	path, query, _ = strings.Cut(path, "?")
	if path == "" {
		return "", "", usagef("the SQLite DSN %q names no file; use sqlite:PATH", dsn)
	}
	if strings.Contains(path, "://") {
		return "", "", usagef("unknown database URL %q; use one of %s", dsn, dsnForms)
	}
	return path, query, nil
}

// mysqlDSN turns mysql://user:password@host:port/db?param=value into
// go-sql-driver/mysql's form, with keel's DSNOptions added.
func mysqlDSN(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("bad MySQL DSN: %v; write it as mysql://user:password@host:3306/db", redactErr(err, dsn))
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" || strings.Contains(db, "/") {
		return "", usagef("the MySQL DSN names no database; write it as mysql://user:password@host:3306/db")
	}
	cfg := gomysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = db
	native := cfg.FormatDSN()
	sep := "?"
	if strings.Contains(native, "?") {
		sep = "&"
	}
	native += sep + mysql.DSNOptions
	if u.RawQuery != "" {
		native += "&" + u.RawQuery
	}
	if _, err := gomysql.ParseDSN(native); err != nil {
		return "", fmt.Errorf("bad MySQL DSN options: %v", err)
	}
	return native, nil
}

// redactErr returns err's message with the DSN's password, if any, blanked.
func redactErr(err error, dsn string) string {
	msg := err.Error()
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}
