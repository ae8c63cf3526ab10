package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/keel-go/keel/outbox/console"
	"github.com/keel-go/keel/store"
)

// consoleOptions are the flags of the console, for `keel console` and
// `keel relay --console`.
type consoleOptions struct {
	addr     string
	readOnly bool
	title    string
}

func consoleFlags(c *cli) {
	c.fs.StringVar(&c.console.addr, "http", "", "serve the console on this address, such as 127.0.0.1:8080")
	c.fs.BoolVar(&c.console.readOnly, "read-only", false, "show the outbox, but hide every action and refuse every change")
	c.fs.StringVar(&c.console.title, "title", "", "name this deployment in the page header (default \"keel\")")
}

// consoleCmd serves the web console until SIGINT or SIGTERM.
func consoleCmd(ctx context.Context, c *cli) error {
	if err := c.wantArgs(0, ""); err != nil {
		return err
	}
	if c.console.addr == "" {
		return usagef("no address; pass --http, such as --http 127.0.0.1:8080")
	}
	log := slog.New(slog.NewJSONHandler(c.stderr, nil))
	c.storeOptions = store.Options{Logger: log}
	st, err := c.store(ctx)
	if err != nil {
		return err
	}
	if err := st.CheckSchema(ctx); err != nil {
		return err
	}
	stop, err := serveConsole(ctx, st, c.console, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	stop()
	return nil
}

// serveConsole serves the console on o.addr and samples the outbox for
// its chart until stop is called. It warns when the address is not a
// loopback one: the console has no authentication of its own.
func serveConsole(ctx context.Context, st *store.Store, o consoleOptions, log *slog.Logger) (stop func(), err error) {
	con, err := console.New(st, console.Options{ReadOnly: o.readOnly, Title: o.title, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("cannot serve the console on %s: %v", o.addr, err)
	}
	if host, _, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			log.Warn("keel: the console has no authentication of its own; serve it on a loopback address, or behind a proxy that authenticates", "addr", ln.Addr().String())
		}
	}
	srv := &http.Server{Handler: con, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("keel: console server stopped", "err", err)
		}
		done <- struct{}{}
	}()
	go func() {
		_ = con.Run(ctx)
		done <- struct{}{}
	}()
	log.Info("keel: serving the console", "addr", ln.Addr().String(), "read_only", o.readOnly)
	return func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
		<-done
		<-done
	}, nil
}
