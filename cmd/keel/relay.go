package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/keel-go/keel/dispatch/kafka"
	"github.com/keel-go/keel/outbox"
	"github.com/keel-go/keel/store"
)

// relayOptions are the flags of "keel relay".
type relayOptions struct {
	brokers   string
	topic     string
	routes    routeFlag
	http      string
	id        string
	batch     int
	lease     time.Duration
	timeout   time.Duration
	logLevel  string
	attempts  int
	autoTopic bool
}

// routeFlag collects repeated --route name=topic flags.
type routeFlag map[string]string

func (r *routeFlag) String() string { return "" }

func (r *routeFlag) Set(v string) error {
	name, topic, ok := strings.Cut(v, "=")
	if !ok || name == "" || topic == "" {
		return fmt.Errorf("route %q is not NAME=TOPIC", v)
	}
	if *r == nil {
		*r = routeFlag{}
	}
	if _, dup := (*r)[name]; dup {
		return fmt.Errorf("event %q is routed twice", name)
	}
	(*r)[name] = topic
	return nil
}

func relayFlags(c *cli) {
	o := &c.relayFlags
	c.fs.StringVar(&o.brokers, "brokers", os.Getenv("KEEL_BROKERS"), "Kafka bootstrap brokers, host:port[,host:port…] (default $KEEL_BROKERS)")
	c.fs.StringVar(&o.topic, "topic", "", "the topic of messages with no topic of their own and no --route")
	c.fs.Var(&o.routes, "route", "send events of this name to this topic, as NAME=TOPIC; repeat for more")
	c.fs.StringVar(&o.http, "http", "", "serve /metrics, /healthz and /readyz on this address, such as :9090")
	c.fs.StringVar(&o.id, "id", "", "this relay's name in the lease tables, unique among running relays (default host name and process id)")
	c.fs.IntVar(&o.batch, "batch-size", 0, fmt.Sprintf("messages per batch (default %d)", outbox.DefaultBatchSize))
	c.fs.DurationVar(&o.lease, "lease", 0, "how long a partition lease lasts without renewal (default the relay's)")
	c.fs.DurationVar(&o.timeout, "publish-timeout", 0, "bound on publishing one batch (default the relay's)")
	c.fs.IntVar(&o.attempts, "max-attempts", 0, "deliveries of a message before it is parked (default the relay's)")
	c.fs.BoolVar(&o.autoTopic, "create-topics", false, "let the broker create missing topics on first write")
	c.fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	c.fs.StringVar(&c.console.addr, "console", "", "serve the web console on this address too, such as 127.0.0.1:8080")
	c.fs.BoolVar(&c.console.readOnly, "console-read-only", false, "serve the console read-only: no requeue")
}

// relay runs a relay publishing to Kafka until SIGINT or SIGTERM. It then
// lets the batches in flight finish, hands its leases back, and returns
// nil.
func relay(ctx context.Context, c *cli) error {
	o := c.relayFlags
	if err := c.wantArgs(0, ""); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usagef("--log-level %q: use debug, info, warn or error", o.logLevel)
	}
	if o.brokers == "" {
		return usagef("no Kafka brokers; pass --brokers host:port or set KEEL_BROKERS")
	}
	if o.topic == "" && len(o.routes) == 0 {
		return usagef("no topic; pass --topic, or --route NAME=TOPIC for each event name")
	}
	log := slog.New(slog.NewJSONHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	reader := sdkmetric.NewManualReader()
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer meters.Shutdown(context.Background())
	c.storeOptions = store.Options{Logger: log, MeterProvider: meters}

	st, err := c.store(ctx)
	if err != nil {
		return err
	}
	if err := st.CheckSchema(ctx); err != nil {
		return err
	}
	var brokers []string
	for _, b := range strings.Split(o.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	routes := o.routes
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: brokers,
		Topic:   o.topic,
		TopicFunc: func(m outbox.Message) string {
			return routes[m.Name]
		},
		AllowAutoTopicCreation: o.autoTopic,
	})
	if err != nil {
		return err
	}
	defer pub.Close()

	// On SIGTERM the batch in flight finishes: StopTimeout is the whole
	// publish timeout, the most a batch can take.
	timeout := o.timeout
	if timeout == 0 {
		lease := o.lease
		if lease == 0 {
			lease = outbox.DefaultLeaseDuration
		}
		timeout = lease / 3
	}
	relay, err := outbox.NewRelay(st, pub, outbox.RelayConfig{
		ID:             o.id,
		BatchSize:      o.batch,
		LeaseDuration:  o.lease,
		PublishTimeout: timeout,
		StopTimeout:    timeout,
		MaxAttempts:    o.attempts,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	var running atomic.Bool
	var srv *http.Server
	if o.http != "" {
		ln, err := net.Listen("tcp", o.http)
		if err != nil {
			return fmt.Errorf("cannot serve --http %s: %v", o.http, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", prometheus{reader: reader, log: log})
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		})
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			if !running.Load() {
				http.Error(w, "not running", http.StatusServiceUnavailable)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := st.DB().PingContext(ctx); err != nil {
				http.Error(w, "database unreachable", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintf(w, "ready: %d partitions\n", relay.Partitions())
		})
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("keel: http server stopped", "err", err)
			}
		}()
		log.Info("keel: serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	}

	if c.console.addr != "" {
		stopConsole, err := serveConsole(ctx, st, c.console, log)
		if err != nil {
			return err
		}
		defer stopConsole()
	}

	log.Info("keel: relay starting", "id", relay.ID(), "brokers", brokers, "topic", o.topic, "routes", len(o.routes))
	running.Store(true)
	err = relay.Run(ctx)
	running.Store(false)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if err != nil {
		return err
	}
	log.Info("keel: relay exited; its leases are handed back", "id", relay.ID())
	return nil
}
