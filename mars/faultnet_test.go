package mars

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// Tests over faultnet, rudp's in-memory lossy network.

func memNode(t *testing.T, n *faultnet.Network, marsAddr string, cfg ClientConfig) *testNode {
	t.Helper()
	conn, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var cl atomic.Pointer[Client]
	tr, err := rudp.New(conn, rudp.Config{
		Logger: quietLogger(), RetryInterval: 100 * time.Millisecond, RetryTimeout: 500 * time.Millisecond,
		CloseTimeout: 100 * time.Millisecond,
		OnMessage: func(from netip.AddrPort, kind byte, p []byte, reliable bool) {
			if c := cl.Load(); c != nil && IsMarsKind(kind) {
				c.HandleMessage(from, kind, p, reliable)
			}
		},
		OnPeerDown: func(addr netip.AddrPort, _ error) {
			if c := cl.Load(); c != nil {
				c.HandlePeerDown(addr)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Transport, cfg.MarsAddr = tr, marsAddr
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.Store(c)
	tn := &testNode{tr: tr, c: c}
	t.Cleanup(tn.close)
	c.Start()
	return tn
}

func memServer(t *testing.T, n *faultnet.Network) *Server {
	t.Helper()
	conn, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := fastOpts()
	opts.Transport = rudp.Config{RetryInterval: 100 * time.Millisecond, RetryTimeout: 500 * time.Millisecond}
	s, err := NewServer(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLossyNetworkConverges(t *testing.T) {
	net := faultnet.New(42)
	net.SetFaults(faultnet.Faults{Loss: 0.1, Duplicate: 0.05, Reorder: 0.1, Jitter: 2 * time.Millisecond})
	s := memServer(t, net)
	var nodes []*testNode
	for i := range 4 {
		nodes = append(nodes, memNode(t, net, s.Addr().String(), ClientConfig{Interval: fastInterval, Type: fmt.Sprint("t", i)}))
	}
	for i, n := range nodes {
		n.c.SetSharedData(fmt.Sprint("k", i), int16(i))
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "every node and key on every node", func() bool {
			return n.c.View().Len() == 4 && len(n.c.View().AllSharedData()) == 4
		})
	}
}

func TestPartitionedNodeIsRemovedThenComesBack(t *testing.T) {
	net := faultnet.New(7)
	s := memServer(t, net)
	watcher := memNode(t, net, s.Addr().String(), ClientConfig{Interval: fastInterval})
	lost := memNode(t, net, s.Addr().String(), ClientConfig{Interval: fastInterval, Type: "lost"})
	lost.c.SetSharedData("from-lost", 1)
	waitFor(t, 2*time.Second, "listed", func() bool {
		_, ok := lost.c.View().SharedData("from-lost")
		return ok && hasNode(watcher.c.View(), lost.c.Addr(), online)
	})

	net.Partition(lost.tr.LocalAddr(), s.Addr())
	waitFor(t, 3*time.Second, "removed while cut off", func() bool { return !hasNode(watcher.c.View(), lost.c.Addr(), nil) })
	waitFor(t, time.Second, "the cut-off node knows it", func() bool { return !lost.c.InTouch() })
	if _, ok := lost.c.View().SharedData("from-lost"); !ok {
		t.Fatal("the cut-off node lost its view")
	}
	lost.c.SetType("back") // a change made while cut off

	net.Heal(lost.tr.LocalAddr(), s.Addr())
	waitFor(t, 3*time.Second, "registered again with its new type", func() bool {
		return hasNode(watcher.c.View(), lost.c.Addr(), func(n Node) bool { return n.Type == "back" && n.Status == StatusOnline })
	})
	if _, ok := watcher.c.View().SharedData("from-lost"); !ok {
		t.Fatal("shared data lost")
	}
}
