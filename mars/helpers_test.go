package mars

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/marsmesh/marsmesh/internal/leaktest"
	"github.com/marsmesh/marsmesh/rudp"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(cleanupRunner{m}, leaktest.Options()...)
}

// cleanupRunner removes the e2e build directory after the tests ran.
type cleanupRunner struct{ m *testing.M }

func (r cleanupRunner) Run() int {
	defer removeBuildDir()
	return r.m.Run()
}

// quietLogger discards logs unless MARS_TEST_LOG is set.
func quietLogger() *slog.Logger {
	if os.Getenv("MARS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fastOpts are server options with short liveness spans for quick tests.
func fastOpts() ServerOptions {
	return ServerOptions{
		OfflineAfter: 300 * time.Millisecond,
		RemoveAfter:  900 * time.Millisecond,
		Logger:       quietLogger(),
	}
}

func startServer(t testing.TB, addr string, opts ServerOptions) *Server {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := Listen(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testNode is a node as the mesh layer builds it: one rudp transport whose
// MARS messages go to the client.
type testNode struct {
	tr *rudp.Transport
	c  *Client
}

func newTestNode(t testing.TB, marsAddr string, cfg ClientConfig) *testNode {
	t.Helper()
	return newTestNodeWith(t, marsAddr, cfg, true)
}

// newTestNodeWith builds a node; forwardPeerDown says whether the
// transport's peer-down events reach the client (the mesh layer may not).
func newTestNodeWith(t testing.TB, marsAddr string, cfg ClientConfig, forwardPeerDown bool) *testNode {
	t.Helper()
	var cl atomic.Pointer[Client]
	tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{
		Logger:       quietLogger(),
		CloseTimeout: 100 * time.Millisecond,
		OnMessage: func(from netip.AddrPort, kind byte, p []byte, reliable bool) {
			if c := cl.Load(); c != nil && IsMarsKind(kind) {
				c.HandleMessage(from, kind, p, reliable)
			}
		},
		OnPeerDown: func(addr netip.AddrPort, _ error) {
			if c := cl.Load(); c != nil && forwardPeerDown {
				c.HandlePeerDown(addr)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Transport = tr
	cfg.MarsAddr = marsAddr
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := NewClient(cfg)
	if err != nil {
		tr.Close()
		t.Fatal(err)
	}
	cl.Store(c)
	n := &testNode{tr: tr, c: c}
	t.Cleanup(n.close)
	return n
}

// startNode builds a node and starts its client.
func startNode(t testing.TB, marsAddr string, cfg ClientConfig) *testNode {
	t.Helper()
	n := newTestNode(t, marsAddr, cfg)
	n.c.Start()
	return n
}

func (n *testNode) close() {
	n.c.Close()
	n.tr.Close()
}

// kill stops the node as a crash would: no leave, and the socket closes
// with no rudp goodbye either.
func (n *testNode) kill() {
	n.c.abort()
	n.tr.Abort()
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasNode(v *View, addr string, cond func(Node) bool) bool {
	n, ok := v.Node(addr)
	return ok && (cond == nil || cond(n))
}

func online(n Node) bool  { return n.Status == StatusOnline }
func offline(n Node) bool { return n.Status == StatusOffline }
