// Package leaktest holds the goleak options shared by every package's
// TestMain.
package leaktest

import (
	"bufio"
	"bytes"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// kcpPrefix is the package of kcp-go; its goroutines are not ours.
const kcpPrefix = "github.com/xtaci/kcp-go/"

// Options ignores goroutines that are not ours: kcp-go starts a
// process-wide timer scheduler (SystemTimedSched) when it is initialised,
// and it lives as long as the process. They are matched by package prefix
// (every goroutine running when Options is called whose top function is
// in kcp-go), not by exact name or file:line, so an accepted kcp-go upgrade
// that renames them does not break the leak checks.
func Options() []goleak.Option {
	names := map[string]bool{
		"github.com/xtaci/kcp-go/v5.(*TimedSched).sched":   true,
		"github.com/xtaci/kcp-go/v5.(*TimedSched).prepend": true,
	}
	for _, f := range topFunctions() {
		if strings.HasPrefix(f, kcpPrefix) {
			names[f] = true
		}
	}
	var opts []goleak.Option
	for f := range names {
		opts = append(opts, goleak.IgnoreTopFunction(f))
	}
	return opts
}

// topFunctions lists the function on top of every goroutine's stack.
func topFunctions() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(buf))
	sc.Buffer(make([]byte, 64<<10), len(buf)+1)
	top := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "goroutine "):
			top = true
		case top && line != "":
			fn := line
			if i := strings.LastIndexByte(fn, '('); i > 0 {
				fn = fn[:i]
			}
			out = append(out, fn)
			top = false
		}
	}
	return out
}

// VerifyTestMain runs the tests and fails if any goroutine is left behind.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m, Options()...)
}
