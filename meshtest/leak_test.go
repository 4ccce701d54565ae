package meshtest_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/meshtest"
)

// captureTB is the test's own TB, except that it keeps the cluster's
// cleanups and errors for the test to run and read.
type captureTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (c *captureTB) Errorf(format string, args ...any) {
	c.mu.Lock()
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

func (c *captureTB) Cleanup(f func()) { c.cleanups = append(c.cleanups, f) }

func (c *captureTB) cleanup() {
	for i := len(c.cleanups) - 1; i >= 0; i-- {
		c.cleanups[i]()
	}
}

// A handler that never returns (it ignores its context) is left behind
// by Shutdown; the cluster's cleanup reports it.
func TestCleanupReportsAStuckHandler(t *testing.T) {
	ct := &captureTB{TB: t}
	stuck := make(chan struct{})
	defer close(stuck) // lets it end, for the package's own leak check
	entered := make(chan struct{})
	c := meshtest.New(ct, meshtest.Options{Nodes: 2, Init: func(n *mesh.Node) {
		n.HandleRPC(9, func([]byte, string) ([]byte, error) {
			close(entered)
			<-stuck
			return nil, nil
		})
	}})
	a, b := c.Nodes()[0], c.Nodes()[1]
	go a.SendRPC(9, b.GetMyEndPoint(), nil) // ends with an error when a shuts down
	<-entered
	ct.cleanup()
	if len(ct.errs) != 1 || !strings.Contains(ct.errs[0], "goroutines left behind") || !strings.Contains(ct.errs[0], "TestCleanupReportsAStuckHandler") {
		t.Fatalf("the cleanup reported %q", ct.errs)
	}
}
