// Package leaktest holds the goleak options shared by every package's
// TestMain.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// Options ignores goroutines that are not ours: kcp-go starts a
// process-wide timer scheduler (SystemTimedSched) when it is initialised,
// and it lives as long as the process.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).sched"),
		goleak.IgnoreTopFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).prepend"),
	}
}

// VerifyTestMain runs the tests and fails if any goroutine is left behind.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m, Options()...)
}
