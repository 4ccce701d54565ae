package meshtest

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// fabric holds the cuts between the cluster's endpoints: a packet from a
// to b is dropped while cut(a, b). Every endpoint's gate asks it on each
// write and each read, so cuts work alike on the in-memory network and on
// loopback, and against peers that are not gated.
type fabric struct {
	mu       sync.Mutex
	links    map[[2]netip.AddrPort]bool // one-way cuts
	isolated map[netip.AddrPort]bool    // cut from everyone, both ways
	state    atomic.Pointer[cuts]       // read on every packet, without the lock
}

// cuts is an immutable copy of the fabric's cuts.
type cuts struct {
	links    map[[2]netip.AddrPort]bool
	isolated map[netip.AddrPort]bool
}

func (f *fabric) cut(from, to netip.AddrPort) bool {
	c := f.state.Load()
	return c != nil && (c.isolated[from] || c.isolated[to] || c.links[[2]netip.AddrPort{from, to}])
}

// change edits the cuts under the lock and publishes a copy.
func (f *fabric) change(edit func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.links == nil {
		f.links = make(map[[2]netip.AddrPort]bool)
		f.isolated = make(map[netip.AddrPort]bool)
	}
	edit()
	c := &cuts{links: make(map[[2]netip.AddrPort]bool, len(f.links)), isolated: make(map[netip.AddrPort]bool, len(f.isolated))}
	for k := range f.links {
		c.links[k] = true
	}
	for k := range f.isolated {
		c.isolated[k] = true
	}
	f.state.Store(c)
}

// udpConn is the allocation-free part of *net.UDPConn that rudp uses,
// also implemented by faultnet.Conn.
type udpConn interface {
	net.PacketConn
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// gate is the socket of one endpoint (a node or MARS) seen through the
// fabric: it drops what the cuts drop, everything once the endpoint is
// killed, and holds a new node's first packets until it is set up.
type gate struct {
	udpConn
	addr netip.AddrPort
	fab  *fabric
	dead atomic.Bool // killed: nothing in or out

	holding atomic.Bool
	mu      sync.Mutex
	held    []heldPacket
}

type heldPacket struct {
	to netip.AddrPort
	b  []byte
}

func newGate(c udpConn, fab *fabric, hold bool) *gate {
	g := &gate{udpConn: c, addr: addrOf(c.LocalAddr()), fab: fab}
	g.holding.Store(hold)
	return g
}

func addrOf(a net.Addr) netip.AddrPort {
	ap := a.(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ReadFromUDPAddrPort reads the next packet the fabric lets through.
func (g *gate) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := g.udpConn.ReadFromUDPAddrPort(b)
		if err != nil || !g.dead.Load() && !g.fab.cut(from, g.addr) {
			return n, from, err
		}
	}
}

// WriteToUDPAddrPort sends b unless the fabric drops it; while the gate
// holds, it keeps a copy to send on release.
func (g *gate) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if g.holding.Load() {
		g.mu.Lock()
		if g.holding.Load() {
			g.held = append(g.held, heldPacket{to, append([]byte(nil), b...)})
			g.mu.Unlock()
			return len(b), nil
		}
		g.mu.Unlock()
	}
	if g.dead.Load() || g.fab.cut(g.addr, to) {
		return len(b), nil // lost on the way, as UDP may
	}
	return g.udpConn.WriteToUDPAddrPort(b, to)
}

// release sends the held packets, in order, and stops holding.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holding.Store(false)
	for _, p := range g.held {
		if !g.dead.Load() && !g.fab.cut(g.addr, p.to) {
			g.udpConn.WriteToUDPAddrPort(p.b, p.to)
		}
	}
	g.held = nil
}

// ReadFrom implements net.PacketConn.
func (g *gate) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := g.ReadFromUDPAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteTo implements net.PacketConn.
func (g *gate) WriteTo(b []byte, to net.Addr) (int, error) {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, &net.AddrError{Err: "not a UDP address", Addr: to.String()}
	}
	ap := ua.AddrPort()
	return g.WriteToUDPAddrPort(b, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}
