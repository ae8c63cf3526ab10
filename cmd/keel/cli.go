package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

var errHelp = errors.New("help requested")

// cli is one invocation of a command: its flags, arguments and output.
type cli struct {
	cmd    command
	fs     *flag.FlagSet
	stdout io.Writer
	stderr io.Writer

	dsn    string
	prefix string
	json   bool
	args   []string

	// Flags of particular commands, registered by their flags function.
	print       bool   // migrate --print
	key         string // parked list/requeue --key
	limit       int    // parked list --limit
	after       int64  // parked list --after
	processType string // processes --type
	all         bool   // processes --all
	afterID     string // processes --after
	relayFlags  relayOptions
	console     consoleOptions // console, and relay --console

	// storeOptions are the options the store is opened with, beyond the
	// prefix; a command sets them before it opens the store.
	storeOptions store.Options

	st      *store.Store
	closeDB func()
}

func newCLI(cmd command, stdout, stderr io.Writer) *cli {
	c := &cli{cmd: cmd, stdout: stdout, stderr: stderr, closeDB: func() {}}
	c.fs = flag.NewFlagSet("keel "+cmd.name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard)
	c.fs.StringVar(&c.dsn, "dsn", os.Getenv("KEEL_DSN"), "the database: postgres://…, mysql://…, sqlite:PATH or a file path (default $KEEL_DSN)")
	c.fs.StringVar(&c.prefix, "prefix", "", "the prefix of keel's table names (default \"keel_\")")
	c.fs.BoolVar(&c.json, "json", false, "print JSON, for scripts")
	if cmd.flags != nil {
		cmd.flags(c)
	}
	return c
}

// parse parses flags and positional arguments in any order, so that
// "keel parked show ID --dsn X" works as well as "keel parked show --dsn X ID".
func (c *cli) parse(args []string) error {
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(c.stdout)
				return errHelp
			}
			return err
		}
		if c.fs.NArg() == 0 {
			return nil
		}
		c.args = append(c.args, c.fs.Arg(0))
		args = c.fs.Args()[1:]
	}
}

func (c *cli) usage(w io.Writer) {
	line := "keel " + c.cmd.name + " [flags]"
	if c.cmd.args != "" {
		line += " " + c.cmd.args
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n\nFlags:\n", line, capitalize(c.cmd.summary))
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// wantArgs checks the number of positional arguments.
func (c *cli) wantArgs(n int, what string) error {
	switch {
	case len(c.args) < n:
		return usagef("missing %s", what)
	case len(c.args) > n:
		return usagef("unexpected argument %q", c.args[n])
	}
	return nil
}

// store opens the database named by --dsn, once.
func (c *cli) store(ctx context.Context) (*store.Store, error) {
	if c.st != nil {
		return c.st, nil
	}
	mode := existing
	if c.cmd.name == "migrate" {
		mode = creating
		if c.print {
			mode = offline
		}
	}
	opts := c.storeOptions
	opts.TablePrefix = c.prefix
	if opts.Logger == nil {
		opts.Logger = discardLogger
	}
	st, closeDB, err := openDSN(ctx, c.dsn, opts, mode)
	if err != nil {
		return nil, err
	}
	c.st, c.closeDB = st, closeDB
	return st, nil
}

// outbox opens the store and returns its Outbox.
func (c *cli) outbox(ctx context.Context) (*outbox.Outbox, error) {
	st, err := c.store(ctx)
	if err != nil {
		return nil, err
	}
	return outbox.New(st)
}

func (c *cli) close() { c.closeDB() }

// printJSON writes v as indented JSON.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// explain adds what to do to errors whose cause the user can fix.
func explain(err error, c *cli) string {
	msg := err.Error()
	if errors.Is(err, store.ErrNotMigrated) {
		return msg + "; run 'keel migrate' with the same --dsn and --prefix"
	}
	return msg
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
}
