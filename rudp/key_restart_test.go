package rudp

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// restartConfig is a keyed configuration under which silence would take
// an hour to end a session: what ends one sooner is the dial back.
func restartConfig(k [32]byte, keepalive time.Duration) Config {
	return Config{RetryInterval: keepalive, RetryTimeout: time.Hour, Keys: [][32]byte{k}}
}

// restartPeer starts a, then b1 with a session from a, then crashes b1
// (no close frames) and starts b2 on its address with the same key.
func restartPeer(t *testing.T, cfg Config) (a *Transport, aIn *inbox, b2 *Transport, b2In *inbox) {
	t.Helper()
	aIn, b1In := newInbox(), newInbox()
	a = listenUDP(t, aIn.config(cfg))
	b1 := listenUDP(t, b1In.config(cfg))
	addr := b1.LocalAddr()
	if err := a.Send(addr, 1, []byte("to b1")); err != nil {
		t.Fatal(err)
	}
	if !b1In.waitFor(10*time.Second, func() bool { return len(b1In.msgs) == 1 }) {
		t.Fatal("no session with b1")
	}
	b1.Abort()
	b2In = newInbox()
	b2, err := Listen(addr.String(), b2In.config(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close() })
	return a, aIn, b2, b2In
}

// TestKeyRestartedPeerFoundAtOnce: with keys, a peer that crashed and
// restarted on the same address is found by the first packet the old
// session sends there, not by silence: the new incarnation dials back,
// the stale session ends with ErrPeerReset and fails what was pending on
// it, the next send reaches the new incarnation, and nothing meant for the
// old one does.
func TestKeyRestartedPeerFoundAtOnce(t *testing.T) {
	a, aIn, b2, b2In := restartPeer(t, restartConfig(testKey(t), time.Hour))
	addr := b2.LocalAddr()
	pending := make(chan error, 1)
	if err := a.SendTracked(addr, 1, nil, []byte("meant for b1"), func(err error) { pending <- err }); err != nil {
		t.Fatal(err)
	}
	d := waitDown(t, aIn, 20*time.Second) // silence would take an hour
	if !errors.Is(d.err, ErrPeerReset) {
		t.Fatalf("the stale session ended with %v, want ErrPeerReset", d.err)
	}
	if err := <-pending; !errors.Is(err, ErrPeerReset) {
		t.Fatalf("the pending message ended with %v, want ErrPeerReset", err)
	}
	if err := a.Send(addr, 1, []byte("to b2")); err != nil {
		t.Fatal(err)
	}
	if !b2In.waitFor(20*time.Second, func() bool { return len(b2In.msgs) >= 1 }) {
		t.Fatal("b2 got nothing")
	}
	b2In.mu.Lock()
	for _, m := range b2In.msgs {
		if string(m.payload) != "to b2" {
			t.Errorf("b2 got %q, meant for the old incarnation", m.payload)
		}
	}
	b2In.mu.Unlock()
	if st, _ := a.Peer(addr); st.Incarnation != b2.Incarnation() {
		t.Fatalf("a's session is with incarnation %x, want b2's %x", st.Incarnation, b2.Incarnation())
	}
	if st := b2.Stats(); st.DialBacks == 0 || st.AuthFailures == 0 {
		t.Errorf("b2's stats: %+v, want dial backs and auth failures (the old session's packets)", st)
	}
}

// TestKeyRestartFoundWhileIdle: an idle session finds the restart by its
// next keepalive, with nothing sent.
func TestKeyRestartFoundWhileIdle(t *testing.T) {
	a, aIn, b2, b2In := restartPeer(t, restartConfig(testKey(t), 100*time.Millisecond))
	d := waitDown(t, aIn, 20*time.Second)
	if !errors.Is(d.err, ErrPeerReset) {
		t.Fatalf("the stale session ended with %v, want ErrPeerReset", d.err)
	}
	if !aIn.waitFor(20*time.Second, func() bool { return len(aIn.ups) == 2 }) {
		t.Fatal("no session with b2 came up at a")
	}
	if st, _ := a.Peer(b2.LocalAddr()); st.Incarnation != b2.Incarnation() {
		t.Fatalf("a's session is with incarnation %x, want b2's %x", st.Incarnation, b2.Incarnation())
	}
	b2In.mu.Lock()
	defer b2In.mu.Unlock()
	if len(b2In.msgs) != 0 || len(b2In.downs) != 0 {
		t.Fatalf("b2 got %d messages and %d downs", len(b2In.msgs), len(b2In.downs))
	}
}

// TestKeyDialBackFlood: a stranger floods a keyed transport with
// sealed-looking session packets from forged source addresses (members
// and not). The transport delivers nothing, tells nobody a peer went
// down, answers only with sealed SYNs to the forged addresses (none to
// the stranger), at most one per address per 100 ms and at most
// dialBackRate per second in all; it keeps no state for addresses nobody
// answers from, and a member whose address was forged ends up with a
// working session, not a broken one.
func TestKeyDialBackFlood(t *testing.T) {
	k := testKey(t)
	n := faultnet.New(21)
	cfg := keyedConfig(k)
	bIn, mIn := newInbox(), newInbox()
	b, tap := listenTap(t, n, "127.0.0.1:0", bIn.config(cfg))
	m := listenMem(t, n, mIn.config(cfg)) // a member that never talked to b
	str := New0(t, n)
	rng := rand.New(rand.NewPCG(21, 1))
	forged := []netip.AddrPort{m.LocalAddr()}
	for i := range 200 {
		forged = append(forged, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(30000+i)))
	}
	start := time.Now()
	const rounds = 20
	for range rounds {
		for _, from := range forged {
			p := make([]byte, 1+rng.IntN(200))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			p[0] = pktSealed
			n.Inject(from, b.LocalAddr(), p)
		}
	}
	waitUntil(t, 20*time.Second, func() bool { return b.Stats().PacketsIn >= uint64(rounds*len(forged)) })
	elapsed := time.Since(start)
	// The member answers; its session with b comes up (b dialed it back).
	if !mIn.waitFor(20*time.Second, func() bool { return len(mIn.ups) == 1 }) {
		t.Fatal("the member's session with b did not come up")
	}
	if bIn.count() != 0 || mIn.count() != 0 {
		t.Fatal("something was delivered")
	}
	noDowns(t, bIn, mIn)
	var syns int
	per := map[netip.AddrPort]int{}
	for _, p := range tap.captured() {
		if p.to == str.LocalAddr() {
			t.Fatal("b sent the stranger a packet")
		}
		if p.to == m.LocalAddr() {
			continue // the handshake and CAPS of the member's session
		}
		if p.data[0] != pktSealedHS {
			t.Fatalf("b sent %#x to a forged address", p.data[0])
		}
		syns++
		per[p.to]++
	}
	// One SYN per dial back here (one key); one dial back per address per
	// 100 ms; dialBackRate per second in all.
	limit := int(elapsed/(100*time.Millisecond)) + 1
	for to, c := range per {
		if c > limit {
			t.Errorf("%d SYNs to %v in %v", c, to, elapsed)
		}
	}
	if max := dialBackRate * (int(elapsed/time.Second) + 2); syns > max {
		t.Errorf("%d SYNs in %v, budget %d", syns, elapsed, max)
	}
	t.Logf("%d SYNs to %d forged addresses in %v; b: %+v", syns, len(per), elapsed, b.Stats())
	if peers := b.Peers(); !slices.Equal(peers, []netip.AddrPort{m.LocalAddr()}) {
		t.Fatalf("b holds sessions with %v, want only the member", peers)
	}
}

// TestKeyRestartFoundByProbe: an idle session whose keepalive is an hour
// away finds the restart as soon as its owner probes it (mesh does so for
// peers of calls that wait for a reply): the probe reaches the new
// incarnation, which dials back, and the stale session ends with
// ErrPeerReset.
func TestKeyRestartFoundByProbe(t *testing.T) {
	a, aIn, b2, _ := restartPeer(t, restartConfig(testKey(t), time.Hour))
	a.Probe(b2.LocalAddr(), 0)
	d := waitDown(t, aIn, 20*time.Second) // the keepalive would take an hour
	if !errors.Is(d.err, ErrPeerReset) {
		t.Fatalf("the stale session ended with %v, want ErrPeerReset", d.err)
	}
	if !aIn.waitFor(20*time.Second, func() bool { return len(aIn.ups) == 2 }) {
		t.Fatal("no session with b2 came up at a")
	}
	a.Probe(netip.MustParseAddrPort("127.0.0.1:9"), 0) // no session: nothing happens
}
