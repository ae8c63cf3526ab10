//go:build race

package testdb

// Race reports whether the test binary was built with the race detector,
// which slows every database round trip several times over. Scale tests
// shrink under it, and run at full size in the build without it.
const Race = true
