package meshtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/rudp"
	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// Options configure a Cluster. The zero value is a MARS and no nodes on
// the in-memory network, with no faults and short intervals.
type Options struct {
	// Nodes is how many nodes New starts (more with Add). New returns once
	// every one lists every one online.
	Nodes int
	// Loopback runs the cluster on UDP sockets on 127.0.0.1 instead of the
	// in-memory network: real sockets, and peers in other processes can
	// reach its nodes. Faults and Network are then unavailable; cuts,
	// kills and restarts work the same.
	Loopback bool
	// Faults apply to every link of the in-memory network (loss,
	// duplication, reordering, delay); see also Network.
	Faults faultnet.Faults
	// Seed drives the in-memory network's random choices, so that a failing
	// run can be repeated. Default 1.
	Seed uint64
	// SyncInterval is how often nodes report to MARS. Default 100 ms.
	SyncInterval time.Duration
	// RetryTimeout is how long a silent peer takes to be found dead (the
	// node config's retryTimeout). Default 1 s.
	RetryTimeout time.Duration
	// OfflineAfter and RemoveAfter: MARS lists a silent node offline, then
	// removes it. Defaults 1 s and 3 s.
	OfflineAfter, RemoveAfter time.Duration
	// Key seals every datagram of the cluster with a fresh cluster key.
	Key bool
	// Config adjusts each node's configuration (after the cluster set MARS's
	// address, the port and RetryTimeout).
	Config func(*config.Mesh)
	// NodeOptions are given to every node, before those of Add.
	NodeOptions []mesh.Option
	// Init runs for every node (New, Add, Restart) right after mesh.New and
	// before the node sends its first packet: no other node can know of it
	// yet, so handlers registered here are in place before any request.
	Init func(n *mesh.Node)
	// Logger receives the logs of MARS and the nodes. Default: discarded,
	// or stderr at debug level when the environment sets MESHTEST_LOG.
	Logger *slog.Logger
}

// Cluster is an in-process MARS and nodes, for tests. Its methods must be
// called from the test's goroutine (they fail the test with t.Fatal);
// the nodes themselves are safe to use from any goroutine.
type Cluster struct {
	t    testing.TB
	o    Options
	fab  fabric
	net  *faultnet.Network // nil on loopback
	srv  *mars.Server
	mars netip.AddrPort
	cfg  config.Mesh
	keys [][config.KeySize]byte

	mu      sync.Mutex
	members []*member // in start order; stopped ones too, until Restart replaces them
	closed  bool
}

// member is one node the cluster started.
type member struct {
	n       *mesh.Node
	gate    *gate
	opts    []mesh.Option
	stopped chan struct{} // closed once a Kill or Shutdown has finished
	gone    bool          // killed or shut down
}

// New starts MARS and o.Nodes nodes, and registers their end with
// t.Cleanup: every node shuts down, MARS closes, and the test fails if
// goroutines of marsmesh are left behind.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 100 * time.Millisecond
	}
	if o.RetryTimeout <= 0 {
		o.RetryTimeout = time.Second
	}
	if o.OfflineAfter <= 0 {
		o.OfflineAfter = time.Second
	}
	if o.RemoveAfter <= 0 {
		o.RemoveAfter = 3 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("MESHTEST_LOG") != "" {
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	c := &Cluster{t: t, o: o}
	if !o.Loopback {
		c.net = faultnet.New(o.Seed)
		c.net.SetFaults(o.Faults)
	}
	leakStart()
	t.Cleanup(c.close)
	c.cfg = config.Default()
	if o.Key {
		k, err := rudp.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		c.cfg.MeshKey = config.EncodeKey(k)
		c.keys = [][config.KeySize]byte{k}
	}
	conn, err := c.listen(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0))
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(conn, &c.fab, false)
	c.srv, err = mars.NewServer(g, mars.ServerOptions{
		OfflineAfter: o.OfflineAfter, RemoveAfter: o.RemoveAfter, Logger: o.Logger,
		Transport: rudp.Config{Keys: c.keys},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.mars = g.addr
	c.cfg.MarsAddress = c.mars.Addr().String()
	c.cfg.MarsPort = fmt.Sprint(c.mars.Port())
	c.cfg.Port = "0"
	c.cfg.RetryTimeout = int(o.RetryTimeout.Milliseconds())
	c.cfg.RetryInterval = min(c.cfg.RetryInterval, c.cfg.RetryTimeout/2)
	if o.Config != nil {
		o.Config(&c.cfg)
	}
	for range o.Nodes {
		c.Add()
	}
	c.WaitSettled()
	return c
}

// listen opens an endpoint at addr (port 0: any free port).
func (c *Cluster) listen(addr netip.AddrPort) (udpConn, error) {
	if c.net != nil {
		return c.net.Listen(addr.String())
	}
	u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	return u, nil
}

// Add starts one more node (with NodeOptions, then opts) and returns it
// once it is ready: it lists itself online (mesh.Node.WaitReady).
func (c *Cluster) Add(opts ...mesh.Option) *mesh.Node {
	c.t.Helper()
	m := c.start(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0), opts)
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	return m.n
}

// start makes a node on a new endpoint at addr and waits until it is ready.
func (c *Cluster) start(addr netip.AddrPort, opts []mesh.Option) *member {
	c.t.Helper()
	conn, err := c.listen(addr)
	if err != nil {
		c.t.Fatalf("meshtest: listen on %s: %v", addr, err)
	}
	g := newGate(conn, &c.fab, true)
	all := append([]mesh.Option{mesh.WithLogger(c.o.Logger), mesh.WithSyncInterval(c.o.SyncInterval)}, c.o.NodeOptions...)
	all = append(all, opts...)
	all = append(all, mesh.WithPacketConn(g))
	n, err := mesh.New(c.cfg, all...)
	if err != nil {
		c.t.Fatalf("meshtest: new node at %s: %v", g.addr, err)
	}
	m := &member{n: n, gate: g, opts: opts, stopped: make(chan struct{})}
	if c.o.Init != nil {
		c.o.Init(n)
	}
	g.release()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit(c.t))
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		c.stop(m, true)
		<-m.stopped
		c.t.Fatalf("meshtest: node %s not ready: %v", g.addr, err)
	}
	return m
}

// Nodes returns the running nodes (not killed nor shut down), in start
// order.
func (c *Cluster) Nodes() []*mesh.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*mesh.Node
	for _, m := range c.members {
		if !m.gone && !m.n.IsDraining() {
			out = append(out, m.n)
		}
	}
	return out
}

// Addrs returns the mesh addresses of Nodes.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, n.GetMyEndPoint())
	}
	return out
}

// MarsAddr is MARS's address, for Cut, Partition and Isolate.
func (c *Cluster) MarsAddr() string { return c.mars.String() }

// Mars is the cluster's MARS server.
func (c *Cluster) Mars() *mars.Server { return c.srv }

// Network is the in-memory network, to set faults per link
// (SetLinkFaults) or change them; nil on loopback.
func (c *Cluster) Network() *faultnet.Network { return c.net }

// Config is the configuration nodes start with (a copy): use it for a
// node made with mesh.New outside the cluster (on loopback only: the
// in-memory network is reached through the cluster's own nodes).
func (c *Cluster) Config() config.Mesh { return c.cfg }

func (c *Cluster) member(n *mesh.Node) *member {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.n == n {
			return m
		}
	}
	c.t.Fatalf("meshtest: %s is not a node of this cluster", n.GetMyEndPoint())
	return nil
}

// Kill stops n as a crash would: from now on nothing reaches it and
// nothing it sends gets out (no leave, no drain notice, no close), so MARS
// and its peers find out by its silence. Its goroutines are released in
// the background (Restart and the cleanup wait for them).
func (c *Cluster) Kill(n *mesh.Node) {
	c.t.Helper()
	m := c.member(n)
	c.mu.Lock()
	was := m.gone
	m.gone = true
	c.mu.Unlock()
	if was {
		return
	}
	c.stop(m, true)
}

// stop kills (kill: the gate drops everything, the node shuts down with
// its waits cut short) or shuts down m in the background.
func (c *Cluster) stop(m *member, kill bool) {
	ctx := context.Background()
	if kill {
		m.gate.dead.Store(true)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		ctx = cctx
	}
	go func() {
		defer close(m.stopped)
		m.n.ShutdownContext(ctx)
	}()
}

// Shutdown shuts n down gracefully (mesh.Node.Shutdown: it drains, then
// leaves) and returns Shutdown's error.
func (c *Cluster) Shutdown(n *mesh.Node) error {
	c.t.Helper()
	m := c.member(n)
	c.mu.Lock()
	was := m.gone
	m.gone = true
	c.mu.Unlock()
	if !was {
		c.stop(m, false)
	}
	<-m.stopped
	return n.Shutdown() // the result of the first call
}

// Restart starts a new incarnation of n on n's address, with n's options
// (plus opts), once n has stopped: a node still running is shut down
// gracefully first. It returns the new node, ready; Nodes lists it in
// n's place.
func (c *Cluster) Restart(n *mesh.Node, opts ...mesh.Option) *mesh.Node {
	c.t.Helper()
	m := c.member(n)
	c.mu.Lock()
	was := m.gone
	m.gone = true
	c.mu.Unlock()
	if !was {
		c.stop(m, false)
	}
	<-m.stopped
	nm := c.start(m.gate.addr, append(slices.Clip(m.opts), opts...))
	c.mu.Lock()
	for i, x := range c.members {
		if x == m {
			c.members[i] = nm
		}
	}
	c.mu.Unlock()
	return nm.n
}

// close is the cleanup: every node still running shuts down (its waits cut
// short), then MARS; then no goroutine of marsmesh may be left.
func (c *Cluster) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	members := slices.Clone(c.members)
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() {
			c.mu.Lock()
			was := m.gone
			m.gone = true
			c.mu.Unlock()
			if !was {
				m.n.ShutdownContext(ctx)
				close(m.stopped)
			}
			<-m.stopped
		})
	}
	wg.Wait()
	var errs []error
	if c.srv != nil {
		errs = append(errs, c.srv.Close())
	}
	if err := errors.Join(errs...); err != nil {
		c.t.Errorf("meshtest: closing MARS: %v", err)
	}
	if leaked := leakEnd(); leaked != "" {
		c.t.Errorf("meshtest: goroutines left behind after the cluster closed:\n%s", leaked)
	}
}
