// Command keel operates a keel outbox from the command line: it applies
// migrations, shows what is pending, retrying and parked, requeues parked
// messages, tells which handlers applied a message and which relay holds
// which partitions, and runs a standalone relay that publishes to Kafka.
//
// Usage:
//
//	keel <command> [flags] [arguments]
//
// The commands:
//
//	migrate                apply keel's migrations (--print shows their SQL)
//	stats                  pending, retrying and parked counts, oldest age
//	parked list            list parked messages (--key K for one key)
//	parked show ID         one message: headers, payload, attempts, error
//	parked requeue ID      make a parked message pending again
//	parked requeue --key K requeue a key's parked messages, in order
//	inbox show ID          which handlers have applied a message
//	leases                 which relay holds which partitions, until when
//	processes              running processes, their state and next timeout
//	relay                  run a relay that publishes to Kafka (--console
//	                       ADDR serves the web console beside it)
//	console                serve the web console on --http ADDR
//
// Every command takes --dsn (or the KEEL_DSN environment variable) naming
// the database, --prefix for keel's table prefix, and --json to print JSON
// for scripts. The dialect follows from the DSN:
//
//	postgres://user@host:5432/db?sslmode=disable   PostgreSQL, through pgx
//	mysql://user:password@host:3306/db             MySQL or MariaDB
//	sqlite:path/to/app.db, or a file path          SQLite, in pure Go
//
// keel exits 0 on success, 1 when a command fails (with one line on
// standard error saying what to do) and 2 for a usage error. "keel help"
// and --help on every command describe the flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name    string // as typed, "parked list"
	summary string
	args    string // positional arguments, for the usage line
	run     func(ctx context.Context, c *cli) error
	flags   func(c *cli) // registers the command's own flags
}

var commands = []command{
	{name: "migrate", summary: "apply keel's migrations, or print their SQL", run: migrate, flags: migrateFlags},
	{name: "stats", summary: "show pending, retrying and parked counts and the oldest pending age", run: stats},
	{name: "parked list", summary: "list parked messages, oldest first", run: parkedList, flags: parkedListFlags},
	{name: "parked show", summary: "show one message: headers, payload, attempts, last error", args: "ID", run: parkedShow},
	{name: "parked requeue", summary: "make a parked message, or a key's parked messages, pending again", args: "ID | --key K", run: parkedRequeue, flags: requeueFlags},
	{name: "inbox show", summary: "show which handlers have applied a message", args: "MESSAGE_ID", run: inboxShow},
	{name: "leases", summary: "show which relay holds which partitions, and until when", run: leases},
	{name: "processes", summary: "list the running processes (--all: ended ones too) with their state and next timeout", run: processes, flags: processesFlags},
	{name: "relay", summary: "run a relay that publishes the outbox to Kafka", run: relay, flags: relayFlags},
	{name: "console", summary: "serve the web console: pending, parked and leases, with requeue", run: consoleCmd, flags: consoleFlags},
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			args = append(args[1:], "--help")
		} else {
			printUsage(stdout)
			if len(args) == 0 {
				return 2
			}
			return 0
		}
	}
	cmd, rest, err := lookup(args)
	if err != nil {
		fmt.Fprintf(stderr, "keel: %v\n", err)
		fmt.Fprintln(stderr, "Run 'keel help' for the list of commands.")
		return 2
	}
	c := newCLI(cmd, stdout, stderr)
	if err := c.parse(rest); err != nil {
		if errors.Is(err, errHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "keel %s: %v\n", cmd.name, err)
		fmt.Fprintf(stderr, "Run 'keel %s --help' for its flags.\n", cmd.name)
		return 2
	}
	defer c.close()
	if err := cmd.run(ctx, c); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "keel %s: %v\n", cmd.name, err)
			fmt.Fprintf(stderr, "Run 'keel %s --help' for its flags.\n", cmd.name)
			return 2
		}
		fmt.Fprintf(stderr, "keel %s: %s\n", cmd.name, oneLine(explain(err, c)))
		return 1
	}
	return 0
}

// lookup finds the command named by the first one or two words of args.
func lookup(args []string) (command, []string, error) {
	for _, cmd := range commands {
		if len(args) >= 2 && cmd.name == args[0]+" "+args[1] {
			return cmd, args[2:], nil
		}
	}
	for _, cmd := range commands {
		if cmd.name == args[0] {
			return cmd, args[1:], nil
		}
	}
	if args[0] == "parked" || args[0] == "inbox" {
		if len(args) == 1 {
			return command{}, nil, fmt.Errorf("%q needs a subcommand", args[0])
		}
		return command{}, nil, fmt.Errorf("unknown command %q", args[0]+" "+args[1])
	}
	return command{}, nil, fmt.Errorf("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "keel operates a keel outbox: migrations, stats, parked messages, inboxes, leases, and a Kafka relay.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w, "  keel <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, cmd := range commands {
		name := cmd.name
		if cmd.args != "" {
			name += " " + cmd.args
		}
		fmt.Fprintf(w, "  %-30s %s\n", name, cmd.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every command takes --dsn (or KEEL_DSN), --prefix and --json. DSNs:")
	fmt.Fprintln(w, "  postgres://user@host:5432/db?sslmode=disable   PostgreSQL")
	fmt.Fprintln(w, "  mysql://user:password@host:3306/db             MySQL or MariaDB")
	fmt.Fprintln(w, "  sqlite:path/to/app.db, or a file path          SQLite")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'keel <command> --help' for a command's flags.")
}
