package mesh

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// cluster is an in-process MARS and nodes on loopback, for tests.
type cluster struct {
	t     testing.TB
	mars  *mars.Server
	nodes []*Node
	cfg   config.Mesh
}

// testConfig is a node config pointing at MARS, with short liveness limits.
func testConfig(marsPort uint16) config.Mesh {
	cfg := config.Default()
	cfg.Port = "0"
	cfg.MarsPort = fmt.Sprint(marsPort)
	cfg.RetryInterval = 200
	cfg.RetryTimeout = 1000
	return cfg
}

func newCluster(t testing.TB, nodes int, opts ...Option) *cluster {
	t.Helper()
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{
		OfflineAfter: time.Second, RemoveAfter: 3 * time.Second, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, mars: srv, cfg: testConfig(srv.Addr().Port())}
	t.Cleanup(c.close)
	for range nodes {
		c.add(opts...)
	}
	c.waitListed(nodes)
	return c
}

func (c *cluster) add(opts ...Option) *Node {
	c.t.Helper()
	opts = append([]Option{WithLogger(quiet), WithSyncInterval(200 * time.Millisecond)}, opts...)
	n, err := New(c.cfg, opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes = append(c.nodes, n)
	select {
	case <-n.Ready():
	case <-time.After(30 * time.Second): // generous: 50 nodes on a starved 2-core machine took over 5 s
		c.t.Fatal("node did not sync with MARS")
	}
	return n
}

// waitListed waits until every node lists count nodes.
func (c *cluster) waitListed(count int) {
	c.t.Helper()
	eventually(c.t, 15*time.Second, func() bool {
		for _, n := range c.nodes {
			if !n.life.closed.Load() && len(n.GetNodeAddresses(nil)) != count {
				return false
			}
		}
		return true
	}, "every node lists %d nodes", count)
}

// close shuts the nodes down together (each drains, as in a rolling
// deploy that stops them all), then MARS.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() { n.Shutdown() })
	}
	wg.Wait()
	c.mars.Close()
}

// eventually polls cond every 10 ms until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until "+what, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
