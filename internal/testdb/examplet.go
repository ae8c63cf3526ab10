package testdb

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
)

// ExampleT is a testing.TB for Example functions, which get none: the kit
// packages' examples run their code against it as a test would. Failures
// and skips panic with the message, failing the example loudly; Logs are
// dropped; Cleanup functions run, last first, when Finish is called.
type ExampleT struct {
	testing.TB // nil: any method not below panics, as a misuse should

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// Finish runs the cleanup functions, last registered first.
func (t *ExampleT) Finish() {
	t.mu.Lock()
	fns := slices.Clone(t.cleanups)
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// Helper does nothing.
func (t *ExampleT) Helper() {}

// Name returns "Example".
func (t *ExampleT) Name() string { return "Example" }

// Cleanup registers fn to run at Finish.
func (t *ExampleT) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}

// TempDir returns a new directory removed at Finish.
func (t *ExampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "keel-example-")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Log drops its arguments.
func (t *ExampleT) Log(...any) {}

// Logf drops its arguments.
func (t *ExampleT) Logf(string, ...any) {}

// Error panics with its arguments.
func (t *ExampleT) Error(args ...any) { t.fail(fmt.Sprint(args...)) }

// Errorf panics with the formatted message.
func (t *ExampleT) Errorf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }

// Fatal panics with its arguments.
func (t *ExampleT) Fatal(args ...any) { t.fail(fmt.Sprint(args...)) }

// Fatalf panics with the formatted message.
func (t *ExampleT) Fatalf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }

// Skip panics: an example cannot be skipped.
func (t *ExampleT) Skip(args ...any) { t.fail("skip: " + fmt.Sprint(args...)) }

// Skipf panics: an example cannot be skipped.
func (t *ExampleT) Skipf(format string, args ...any) { t.fail("skip: " + fmt.Sprintf(format, args...)) }

// Failed reports whether the example failed.
func (t *ExampleT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Context returns a background context.
func (t *ExampleT) Context() context.Context { return context.Background() }

func (t *ExampleT) fail(msg string) {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	panic(msg)
}
