// Package leaktest holds the goroutine leak check every package's TestMain
// runs (go.uber.org/goleak).
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// Options are the goleak options every TestMain passes: none. No
// goroutine is exempt, since the module starts none that outlives what
// started it (the kcp-go scheduler goroutines it used to exempt went with
// that dependency).
func Options() []goleak.Option { return nil }

// VerifyTestMain runs the tests and fails if any goroutine is left behind.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m, Options()...)
}
