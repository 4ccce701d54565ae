package mars

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// Helpers of the hostile tests (hostile_*_test.go): a peer that forges
// what the network lets any process forge.

// spoofConn is a node's UDP socket seen through a forger's eyes: packets
// from forger arrive as if sent by victim, which is what a datagram with a
// forged source address looks like on a real network.
type spoofConn struct {
	*net.UDPConn
	forger, victim atomic.Pointer[netip.AddrPort]
}

func (c *spoofConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if f, v := c.forger.Load(), c.victim.Load(); f != nil && v != nil && from == *f {
		from = *v
	}
	return n, from, err
}

// spoofedNode is a node whose socket lets forger pose as MARS.
func spoofedNode(t *testing.T, marsAddr netip.AddrPort, forger netip.AddrPort, cfg ClientConfig) *testNode {
	t.Helper()
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	sc := &spoofConn{UDPConn: uc}
	sc.forger.Store(&forger)
	sc.victim.Store(&marsAddr)
	var cl atomic.Pointer[Client]
	tr, err := rudp.New(sc, rudp.Config{
		Logger: quietLogger(), CloseTimeout: 100 * time.Millisecond,
		OnMessage: func(from netip.AddrPort, kind byte, p []byte, reliable bool) {
			if c := cl.Load(); c != nil && IsMarsKind(kind) {
				c.HandleMessage(from, kind, p, reliable)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Transport, cfg.MarsAddr, cfg.Logger = tr, marsAddr.String(), quietLogger()
	c, err := NewClient(cfg)
	if err != nil {
		tr.Close()
		t.Fatal(err)
	}
	cl.Store(c)
	n := &testNode{tr: tr, c: c}
	t.Cleanup(n.close)
	c.Start()
	return n
}

// forgedSync is a full sync from MARS (incarnation marsInc) to the node at
// addr that lists an intruder node and an intruder key.
func forgedSync(addr string, marsInc uint64) []byte {
	rec := appendRecord(nil, &nodeRecord{Addr: "10.9.9.9:7000", Inc: 7, Type: "intruder", Status: StatusOnline})
	bb := bodyBuilder{nodes: [][]byte{rec}, states: []State{StateOnline}, keys: []kv{{"intruder", 666}}}
	h := syncHead{Addr: addr, MarsInc: marsInc, Flags: syncFull, To: 1 << 40}
	return appendSync(nil, &h, bb.build()[0])
}

// settled waits for two more syncs of n, so anything MARS accepted before
// the call has reached n's view.
func settled(t *testing.T, n *testNode) {
	t.Helper()
	for range 3 {
		if err := n.c.WaitForLatestNodeData(); err == nil {
			return
		}
	}
	t.Fatal("the node stopped syncing")
}
