package storetest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logger returns a logger writing to t's log at Warn level and above, so
// that a store's, relay's or router's reports appear beside the failure
// they explain (and with go test -v). Records logged after the test has
// ended, by a goroutine still winding down, are dropped: testing forbids
// logging then.
func Logger(t testing.TB) *slog.Logger {
	h := &testHandler{t: t, state: &testState{}}
	t.Cleanup(func() {
		h.state.mu.Lock()
		h.state.done = true
		h.state.mu.Unlock()
	})
	return slog.New(h)
}

type testState struct {
	mu   sync.Mutex
	done bool
}

// testHandler formats records with slog's text handler and writes each to
// t.Log. attrs and groups are kept in a text handler of its own.
type testHandler struct {
	t     testing.TB
	state *testState
	with  func(slog.Handler) slog.Handler
}

// Enabled reports whether l is Warn or above.
func (h *testHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

// Handle formats r as slog's text handler would, without the time, and
// writes it to the test's log unless the test has ended.
func (h *testHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	var inner slog.Handler = slog.NewTextHandler(&b, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // the test log has its own order; times only add noise
			}
			return a
		},
	})
	if h.with != nil {
		inner = h.with(inner)
	}
	if err := inner.Handle(ctx, r); err != nil {
		return err
	}
	h.state.mu.Lock()
	defer h.state.mu.Unlock()
	if !h.state.done {
		h.t.Log(strings.TrimSuffix(b.String(), "\n"))
	}
	return nil
}

// WithAttrs returns a handler adding attrs to every record.
func (h *testHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	prev := h.with
	return &testHandler{t: h.t, state: h.state, with: func(in slog.Handler) slog.Handler {
		if prev != nil {
			in = prev(in)
		}
		return in.WithAttrs(attrs)
	}}
}

// WithGroup returns a handler putting later attributes in group name.
func (h *testHandler) WithGroup(name string) slog.Handler {
	prev := h.with
	return &testHandler{t: h.t, state: h.state, with: func(in slog.Handler) slog.Handler {
		if prev != nil {
			in = prev(in)
		}
		return in.WithGroup(name)
	}}
}
