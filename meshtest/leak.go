package meshtest

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The goroutine-leak check. Clusters may run in parallel, so the check
// runs when the last open cluster of the process closes: every goroutine
// started since the first of them opened that runs marsmesh code (mesh,
// MARS, the transport, or a handler called by them) must have ended.
// Goroutines running when that first cluster opened are not counted.

var leaks struct {
	mu     sync.Mutex
	open   int
	before map[uint64]bool // goroutine IDs when the first open cluster opened
}

// leakStart notes a cluster opening.
func leakStart() {
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	if leaks.open == 0 {
		leaks.before = make(map[uint64]bool)
		for _, g := range goroutines() {
			leaks.before[g.id] = true
		}
	}
	leaks.open++
}

// leakEnd notes a cluster closed; if it was the last open one, it waits
// (a few seconds at most) for the goroutines it counts to end and returns
// the stacks of those still running, or "".
func leakEnd() string {
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	if leaks.open--; leaks.open > 0 {
		return ""
	}
	var left []string
	poll(5*time.Second, func() bool {
		left = left[:0]
		for _, g := range goroutines() {
			if !leaks.before[g.id] && ours(g.stack) {
				left = append(left, g.stack)
			}
		}
		return len(left) == 0
	})
	return strings.Join(left, "\n\n")
}

// ours reports whether a goroutine runs marsmesh code: a frame of the
// module's packages other than this one, outside tests' own goroutines.
func ours(stack string) bool {
	if strings.Contains(stack, "testing.tRunner(") || strings.Contains(stack, "/marsmesh/meshtest.") {
		return false
	}
	return strings.Contains(stack, "github.com/marsmesh/marsmesh/")
}

type goroutine struct {
	id    uint64
	stack string
}

// goroutines lists every goroutine but the caller's.
func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for i, block := range bytes.Split(buf, []byte("\n\n")) {
		if i == 0 {
			continue // the caller
		}
		head, _, _ := strings.Cut(string(block), " [")
		id, err := strconv.ParseUint(strings.TrimPrefix(head, "goroutine "), 10, 64)
		if err == nil {
			out = append(out, goroutine{id, string(block)})
		}
	}
	return out
}
