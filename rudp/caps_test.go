package rudp

import (
	"bytes"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

// oldConn is a loopback UDP socket that reads like a transport from before
// CAPS: a datagram longer than its 2,800-byte read buffer is lost, and
// (when drop is set) packets of the given type are dropped on the way out.
type oldConn struct {
	*net.UDPConn // not exposed as *net.UDPConn: the transport sees a plain PacketConn
	maxIn        int
	dropOut      byte
	tooBig       atomic.Int64 // datagrams lost to the read buffer
	dropped      atomic.Int64 // packets of type dropOut not sent
}

func (c *oldConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil || n <= c.maxIn {
			return n, addr, err
		}
		c.tooBig.Add(1)
	}
}

func (c *oldConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.dropOut != 0 && len(b) > 0 && b[0] == c.dropOut {
		c.dropped.Add(1)
		return len(b), nil
	}
	return c.UDPConn.WriteTo(b, addr)
}

// plainConn hides everything but net.PacketConn's methods.
type plainConn struct{ c *oldConn }

func (p plainConn) ReadFrom(b []byte) (int, net.Addr, error)  { return p.c.ReadFrom(b) }
func (p plainConn) WriteTo(b []byte, a net.Addr) (int, error) { return p.c.WriteTo(b, a) }
func (p plainConn) Close() error                              { return p.c.Close() }
func (p plainConn) LocalAddr() net.Addr                       { return p.c.LocalAddr() }
func (p plainConn) SetDeadline(t time.Time) error             { return p.c.SetDeadline(t) }
func (p plainConn) SetReadDeadline(t time.Time) error         { return p.c.SetReadDeadline(t) }
func (p plainConn) SetWriteDeadline(t time.Time) error        { return p.c.SetWriteDeadline(t) }

func listenOld(t *testing.T, cfg Config, maxIn int, dropOut byte) (*Transport, *oldConn) {
	t.Helper()
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	oc := &oldConn{UDPConn: uc, maxIn: maxIn, dropOut: dropOut}
	tr, err := New(plainConn{oc}, withSuiteKey(cfg))
	if err != nil {
		uc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, oc
}

func skipSmallLoopback(t *testing.T, a *Transport, to netip.AddrPort) {
	t.Helper()
	if link := a.paths.linkMTU(a.local.Addr(), to.Addr()); link < maxWirePacket+28 {
		t.Skipf("loopback MTU %d: no room for bigger datagrams", link)
	}
}

// sessionSizes reports a's session towards to: packet and segment size,
// and the peer's datagram size as its CAPS said (0: not heard).
func sessionSizes(a *Transport, to netip.AddrPort) (mtu, mss, peer int) {
	s := a.lookup(to)
	if s == nil {
		return 0, 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mtu, s.mss, s.peerPacket
}

// TestOlderPeerKeepsStandardSizes: a peer from before CAPS (2,800-byte read
// buffers, no CAPS) gets datagrams it can read, both ways, over loopback
// where a session between two current transports grows to 63 KiB packets.
func TestOlderPeerKeepsStandardSizes(t *testing.T) {
	newBox, oldBox := newInbox(), newInbox()
	cur := listenUDP(t, newBox.config(Config{}))
	old, oc := listenOld(t, oldBox.config(Config{}), 2800, 0)
	old.noCaps.Store(true)
	skipSmallLoopback(t, cur, old.LocalAddr())
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for i := range 3 {
		if err := cur.Send(old.LocalAddr(), byte(i), msg); err != nil {
			t.Fatal(err)
		}
	}
	if !oldBox.waitFor(15*time.Second, func() bool { return len(oldBox.msgs) == 3 }) {
		t.Fatalf("older peer got %d of 3 64 KiB messages (%d datagrams too big for it)", oldBox.count(), oc.tooBig.Load())
	}
	if err := old.Send(cur.LocalAddr(), 9, msg); err != nil {
		t.Fatal(err)
	}
	if !newBox.waitFor(15*time.Second, func() bool { return len(newBox.msgs) == 1 }) {
		t.Fatal("64 KiB message from the older peer not delivered")
	}
	for _, m := range append(oldBox.msgs, newBox.msgs...) {
		if !bytes.Equal(m.payload, msg) {
			t.Fatal("a 64 KiB message arrived changed")
		}
	}
	if n := oc.tooBig.Load(); n != 0 {
		t.Errorf("%d datagrams too big for the older peer", n)
	}
	if mtu, _, peer := sessionSizes(cur, old.LocalAddr()); mtu != cur.kcpMTU || peer != 0 {
		t.Errorf("session towards the older peer: packet %d (want the standard %d), peer CAPS %d", mtu, cur.kcpMTU, peer)
	}
}

// TestCapsGrowSessions: two current transports tell each other their sizes
// during the handshake; on loopback both ends of the session then send
// 63 KiB packets of 16 KiB segments.
func TestCapsGrowSessions(t *testing.T) {
	aBox, bBox := newInbox(), newInbox()
	a := listenUDP(t, aBox.config(Config{}))
	b := listenUDP(t, bBox.config(Config{}))
	skipSmallLoopback(t, a, b.LocalAddr())
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !bBox.waitFor(10*time.Second, func() bool { return len(bBox.msgs) == 1 }) {
		t.Fatal("first message not delivered")
	}
	want := a.sessionMTU(b.LocalAddr(), maxWirePacket)
	for _, end := range []struct {
		name string
		tr   *Transport
		to   netip.AddrPort
	}{{"dialer", a, b.LocalAddr()}, {"responder", b, a.LocalAddr()}} {
		waitUntil(t, 10*time.Second, func() bool { mtu, _, _ := sessionSizes(end.tr, end.to); return mtu == want })
		if mtu, mss, peer := sessionSizes(end.tr, end.to); mss != kcp.MaxSegmentData || peer != maxWirePacket {
			t.Errorf("%s: packet %d, segment %d, peer CAPS %d; want %d, %d, %d", end.name, mtu, mss, peer, want, kcp.MaxSegmentData, maxWirePacket)
		}
	}
}

// TestCapsLost: when every CAPS of one end is lost on the way, the session
// keeps the standard sizes both ways and works; the other end asks again
// with keepalives and gives up after capsTries.
func TestCapsLost(t *testing.T) {
	if len(suiteKey) > 0 {
		t.Skip("the lossy socket drops CAPS by type: only readable without keys")
	}
	aBox, bBox := newInbox(), newInbox()
	cfg := Config{RetryInterval: 50 * time.Millisecond, RetryTimeout: 5 * time.Second}
	a, ac := listenOld(t, aBox.config(cfg), readBufSize, pktCaps) // reads everything, its CAPS are lost
	b := listenUDP(t, bBox.config(cfg))
	skipSmallLoopback(t, b, a.LocalAddr())
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !bBox.waitFor(10*time.Second, func() bool { return len(bBox.msgs) == 1 }) {
		t.Fatal("first message not delivered")
	}
	// b hears no CAPS and asks with a's keepalives until it gave up.
	waitUntil(t, 10*time.Second, func() bool { return ac.dropped.Load() >= capsTries })
	s := b.lookup(a.LocalAddr())
	waitUntil(t, 10*time.Second, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.capsSent == capsTries })
	msg := bytes.Repeat([]byte{7}, 64<<10)
	if err := b.Send(a.LocalAddr(), 2, msg); err != nil {
		t.Fatal(err)
	}
	if !aBox.waitFor(10*time.Second, func() bool { return len(aBox.msgs) == 1 }) {
		t.Fatal("64 KiB message not delivered")
	}
	if mtu, _, peer := sessionSizes(b, a.LocalAddr()); mtu != b.kcpMTU || peer != 0 {
		t.Errorf("b's session: packet %d (want the standard %d), peer CAPS %d", mtu, b.kcpMTU, peer)
	}
	if n := ac.dropped.Load(); n > capsTries {
		t.Errorf("a sent %d CAPS, at most %d expected", n, capsTries)
	}
}

// TestCapsFeatures: each end learns the other's Config.Features from its
// CAPS; a CAPS without the field (an older transport's) reads as 0.
func TestCapsFeatures(t *testing.T) {
	aBox, bBox := newInbox(), newInbox()
	a := listenUDP(t, aBox.config(Config{Features: 0x5}))
	b := listenUDP(t, bBox.config(Config{Features: 0xA0}))
	if got := a.PeerFeatures(b.LocalAddr()); got != 0 {
		t.Fatalf("features %x before any session", got)
	}
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool {
		return a.PeerFeatures(b.LocalAddr()) == 0xA0 && b.PeerFeatures(a.LocalAddr()) == 0x5
	})
	old := caps{tagged: tagged{typ: pktCaps, conv: 7, tag: 9}, maxPacket: 1, maxSegment: 2, features: 0xFF}
	c, ok := parseCaps(old.append(nil)[:capsSize])
	if !ok || c.features != 0 || c.maxSegment != 2 {
		t.Fatalf("a CAPS without features: %+v, %v", c, ok)
	}
	if c, ok := parseCaps(old.append(nil)); !ok || c.features != 0xFF {
		t.Fatalf("a CAPS with features: %+v, %v", c, ok)
	}
}
