package rudp

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// tapConn records every datagram a transport writes (the capture seam of
// the replay tests).
type tapConn struct {
	*faultnet.Conn
	mu   sync.Mutex
	pkts []tapped
}

type tapped struct {
	to   netip.AddrPort
	data []byte
}

func (c *tapConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	c.mu.Lock()
	c.pkts = append(c.pkts, tapped{to, append([]byte(nil), b...)})
	c.mu.Unlock()
	return c.Conn.WriteToUDPAddrPort(b, to)
}

func (c *tapConn) captured() []tapped {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tapped(nil), c.pkts...)
}

func listenTap(t testing.TB, n *faultnet.Network, addr string, cfg Config) (*Transport, *tapConn) {
	t.Helper()
	c, err := n.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tapConn{Conn: c}
	tr, err := New(tc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, tc
}

func keyedConfig(keys ...[32]byte) Config {
	c := forgeConfig()
	c.Keys = keys
	return c
}

// TestKeyStrangerGetsNothing: a transport without the key, or with a
// wrong one, gets no answer at all from a keyed one, delivers nothing
// there and creates no session there, whichever side dials; reliable
// and unreliable sends alike.
func TestKeyStrangerGetsNothing(t *testing.T) {
	k, wrong := testKey(t), testKey(t)
	for _, stranger := range []struct {
		name string
		keys [][32]byte
	}{{"keyless", nil}, {"wrong key", [][32]byte{wrong}}} {
		t.Run(stranger.name, func(t *testing.T) {
			n := faultnet.New(7)
			kIn, sIn := newInbox(), newInbox()
			cfg := fastConfig()
			cfg.Keys = [][32]byte{k}
			keyed := listenMem(t, n, kIn.config(cfg))
			cfg.Keys = stranger.keys
			var str *Transport
			if cfg.Keys == nil {
				str = New0(t, n, sIn.config(cfg))
			} else {
				str = listenMem(t, n, sIn.config(cfg))
			}
			for i := range 20 {
				str.Send(keyed.LocalAddr(), 1, []byte("in"))
				str.USend(keyed.LocalAddr(), 2, []byte("u-in"))
				str.USend(keyed.LocalAddr(), 2, make([]byte, 3000))
				if i == 0 {
					keyed.Send(str.LocalAddr(), 1, []byte("out"))
					keyed.USend(str.LocalAddr(), 2, []byte("u-out"))
				}
				time.Sleep(10 * time.Millisecond)
			}
			// Both dials fail: nobody answered.
			if !sIn.waitFor(20*time.Second, func() bool { return len(sIn.downs) > 0 }) ||
				!kIn.waitFor(20*time.Second, func() bool { return len(kIn.downs) > 0 }) {
				t.Fatal("a dial did not fail")
			}
			if kIn.count() != 0 || sIn.count() != 0 {
				t.Fatalf("delivered: keyed %d, stranger %d", kIn.count(), sIn.count())
			}
			if len(kIn.ups) != 0 || len(sIn.ups) != 0 {
				t.Fatal("a session came up")
			}
			ks := keyed.Stats()
			if ks.AuthFailures == 0 {
				t.Errorf("keyed side counted no auth failures: %+v", ks)
			}
			// Everything the keyed side sent was its own SYNs and held
			// nothing for the stranger: no answer to the stranger's packets.
			ss := str.Stats()
			synsOnly := ks.PacketsOut
			if ss.PacketsIn != synsOnly {
				t.Errorf("stranger received %d packets, keyed side sent %d", ss.PacketsIn, synsOnly)
			}
			if _, ok := keyed.Peer(str.LocalAddr()); ok {
				t.Error("keyed side holds a session with the stranger")
			}
			t.Logf("keyed: %+v", ks)
		})
	}
}

// TestKeyStrangerNoAnswer: a keyed transport that never dials sends
// nothing at all to a stranger's packets.
func TestKeyStrangerNoAnswer(t *testing.T) {
	n := faultnet.New(8)
	keyed := listenMem(t, n, keyedConfig(testKey(t)))
	str := New0(t, n)
	other := listenMem(t, n, keyedConfig(testKey(t)))
	for range 50 {
		str.Send(keyed.LocalAddr(), 1, []byte("in"))
		str.USend(keyed.LocalAddr(), 2, []byte("u"))
		other.Send(keyed.LocalAddr(), 1, []byte("in"))
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for keyed.Stats().PacketsIn < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := keyed.Stats()
	if st.PacketsIn < 20 || st.PacketsOut != 0 || st.Sessions != 0 {
		t.Fatalf("keyed side: %+v (want packets in, none out, no sessions)", st)
	}
}

// keyedSession sets up a tapped keyed pair a (dialer) and b with some
// traffic; it returns what a wrote.
func keyedSession(t *testing.T, n *faultnet.Network, k [32]byte, aIn, bIn *inbox) (a, b *Transport, ta *tapConn) {
	t.Helper()
	a, ta = listenTap(t, n, "127.0.0.1:0", aIn.config(keyedConfig(k)))
	b = listenMem(t, n, bIn.config(keyedConfig(k)))
	for i := range 20 {
		if err := a.Send(b.LocalAddr(), 1, fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := a.USend(b.LocalAddr(), 2, fmt.Appendf(nil, "u%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	a.Send(b.LocalAddr(), 1, make([]byte, 20000))
	a.USend(b.LocalAddr(), 2, make([]byte, 4000))
	if !bIn.waitFor(20*time.Second, func() bool { return countRel(bIn.msgs, true) == 21 && countRel(bIn.msgs, false) >= 21 }) {
		t.Fatalf("b got %d reliable, %d unreliable", countRel(bIn.msgs, true), countRel(bIn.msgs, false))
	}
	return a, b, ta
}

// TestKeyReplayDeliversNothing: every datagram a sent (handshake, KCP,
// unreliable, control), replayed to b from a's address and from another
// one, delivers nothing twice and changes no session.
func TestKeyReplayDeliversNothing(t *testing.T) {
	n := faultnet.New(9)
	aIn, bIn := newInbox(), newInbox()
	k := testKey(t)
	a, b, ta := keyedSession(t, n, k, aIn, bIn)
	before := bIn.count()
	pkts := ta.captured()
	other := netip.MustParseAddrPort("127.0.0.1:9")
	for range 3 {
		for _, p := range pkts {
			n.Inject(a.LocalAddr(), b.LocalAddr(), p.data)
			n.Inject(other, b.LocalAddr(), p.data)
		}
	}
	// Traffic still flows, and nothing was delivered twice.
	a.Send(b.LocalAddr(), 1, []byte("after"))
	if !bIn.waitFor(20*time.Second, func() bool { return countRel(bIn.msgs, true) == 22 }) {
		t.Fatal("traffic stopped after the replay")
	}
	time.Sleep(50 * time.Millisecond)
	if got := bIn.count(); got != before+1 {
		t.Fatalf("b delivered %d messages after the replay, want 1", got-before)
	}
	st := b.Stats()
	if st.Replays == 0 || st.AuthFailures == 0 {
		t.Errorf("b's stats %+v: want replays and auth failures counted", st)
	}
	if ps, _ := b.Peer(a.LocalAddr()); !ps.Established || ps.Incarnation != a.Incarnation() {
		t.Fatalf("b's session %+v", ps)
	}
	if _, ok := b.Peer(other); ok {
		t.Fatal("a replay from another address made a session")
	}
	noDowns(t, aIn, bIn)
	if len(bIn.ups) != 1 {
		t.Fatalf("b saw %d sessions come up", len(bIn.ups))
	}
}

// TestKeyReplayOldSession: the datagrams of a closed session (handshake,
// data, FIN) replayed into the next session between the same addresses
// deliver nothing and neither end nor reset it.
func TestKeyReplayOldSession(t *testing.T) {
	n := faultnet.New(10)
	aIn, bIn := newInbox(), newInbox()
	k := testKey(t)
	a, b, ta := keyedSession(t, n, k, aIn, bIn)
	addrA := a.LocalAddr()
	a.Close() // FIN: b's session ends
	if !bIn.waitFor(20*time.Second, func() bool { return len(bIn.downs) == 1 }) {
		t.Fatal("b did not see a close")
	}
	old := ta.captured()
	// A new transport on a's address: a restart.
	a2In := newInbox()
	a2, _ := listenTap(t, n, addrA.String(), a2In.config(keyedConfig(k)))
	if err := a2.Send(b.LocalAddr(), 1, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(20*time.Second, func() bool {
		return len(bIn.ups) == 2 && string(bIn.msgs[len(bIn.msgs)-1].payload) == "new"
	}) {
		t.Fatal("no new session")
	}
	before := bIn.count()
	for _, p := range old {
		n.Inject(addrA, b.LocalAddr(), p.data)
	}
	a2.Send(b.LocalAddr(), 1, []byte("after"))
	if !bIn.waitFor(20*time.Second, func() bool { return len(bIn.msgs) >= before+1 }) {
		t.Fatal("traffic stopped")
	}
	time.Sleep(50 * time.Millisecond)
	bIn.mu.Lock()
	got := bIn.msgs[before:]
	downs := len(bIn.downs)
	bIn.mu.Unlock()
	if len(got) != 1 || string(got[0].payload) != "after" {
		t.Fatalf("after the replay b delivered %d messages", len(got))
	}
	if downs != 1 {
		t.Fatalf("b saw %d sessions end, want 1 (the closed one)", downs)
	}
	if ps, _ := b.Peer(addrA); !ps.Established || ps.Incarnation != a2.Incarnation() {
		t.Fatalf("b's session %+v, want the new incarnation %x", ps, a2.Incarnation())
	}
}

// TestKeyFlippedBit: every captured datagram with one bit flipped is
// dropped and counted, and delivers nothing.
func TestKeyFlippedBit(t *testing.T) {
	n := faultnet.New(11)
	aIn, bIn := newInbox(), newInbox()
	a, b, ta := keyedSession(t, n, testKey(t), aIn, bIn)
	before := bIn.count()
	st0 := b.Stats()
	rng := rand.New(rand.NewPCG(11, 0))
	pkts := ta.captured()
	for _, p := range pkts {
		for range 4 {
			q := append([]byte(nil), p.data...)
			bit := rng.IntN(len(q) * 8)
			q[bit/8] ^= 1 << (bit % 8)
			b.handlePacket(q, a.LocalAddr())
		}
	}
	st := b.Stats()
	dropped := (st.AuthFailures - st0.AuthFailures) + (st.Replays - st0.Replays) + (st.BadPackets - st0.BadPackets)
	if dropped != uint64(4*len(pkts)) {
		t.Fatalf("%d of %d flipped datagrams counted as dropped (%+v)", dropped, 4*len(pkts), st)
	}
	if bIn.count() != before {
		t.Fatal("a flipped datagram was delivered")
	}
	a.Send(b.LocalAddr(), 1, []byte("after"))
	if !bIn.waitFor(20*time.Second, func() bool { return len(bIn.msgs) == before+1 }) {
		t.Fatal("traffic stopped")
	}
	noDowns(t, aIn, bIn)
}

// TestKeyRotationMatrix: transports connect when their key lists share a
// key, whichever dials and whichever key is first, and not otherwise.
func TestKeyRotationMatrix(t *testing.T) {
	k1, k2, k3 := testKey(t), testKey(t), testKey(t)
	sets := map[string][][32]byte{
		"K1": {k1}, "K1,K2": {k1, k2}, "K2,K1": {k2, k1}, "K2": {k2}, "K3": {k3},
	}
	names := []string{"K1", "K1,K2", "K2,K1", "K2", "K3"}
	common := func(a, b [][32]byte) bool {
		for _, x := range a {
			for _, y := range b {
				if x == y {
					return true
				}
			}
		}
		return false
	}
	n := faultnet.New(12)
	for _, da := range names {
		for _, db := range names {
			aIn, bIn := newInbox(), newInbox()
			ca, cb := fastConfig(), fastConfig()
			ca.Keys, cb.Keys = sets[da], sets[db]
			a := listenMem(t, n, aIn.config(ca))
			b := listenMem(t, n, bIn.config(cb))
			done := make(chan error, 1)
			if err := a.SendTracked(b.LocalAddr(), 1, nil, []byte("x"), func(err error) { done <- err }); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s -> %s: no outcome", da, db)
			}
			want := common(sets[da], sets[db])
			if (err == nil) != want {
				t.Errorf("%s -> %s: err %v, want connected=%v", da, db, err, want)
			}
			if want {
				b.USend(a.LocalAddr(), 2, []byte("u"))
				if !aIn.waitFor(20*time.Second, func() bool { return len(aIn.msgs) == 1 }) {
					t.Errorf("%s <- %s: unreliable reply lost", da, db)
				}
			} else if bIn.count() != 0 {
				t.Errorf("%s -> %s: delivered without a common key", da, db)
			}
			a.Close()
			b.Close()
		}
	}
}

// TestKeyAuthFailureAllocs: a datagram that fails to open costs no
// allocation (it is opened in place in the read buffer).
func TestKeyAuthFailureAllocs(t *testing.T) {
	n := faultnet.New(13)
	aIn, bIn := newInbox(), newInbox()
	a, b, _ := keyedSession(t, n, testKey(t), aIn, bIn)
	rng := rand.New(rand.NewPCG(13, 0))
	garbage := func(typ byte, size int) []byte {
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		p[0] = typ
		return p
	}
	stranger := netip.MustParseAddrPort("127.0.0.1:9")
	cases := []struct {
		name string
		p    []byte
		from netip.AddrPort
	}{
		{"session packet", garbage(pktSealed, 1200), a.LocalAddr()},
		{"session packet, no session", garbage(pktSealed, 1200), stranger},
		{"handshake", garbage(pktSealedHS, sealedHSSize), a.LocalAddr()},
		{"plain KCP", garbage(pktKCP, 200), a.LocalAddr()},
		{"plain SYN", handshake{typ: pktSyn, src: 1, dtok: 2}.append(nil), stranger},
	}
	for _, c := range cases {
		buf := make([]byte, len(c.p))
		before := b.Stats().AuthFailures
		allocs := testing.AllocsPerRun(200, func() {
			copy(buf, c.p)
			// A fresh counter each time, so the replay check passes.
			if c.p[0] == pktSealed {
				buf[1] = 0xff
				buf[2] = byte(rng.Uint32())
			}
			b.handlePacket(buf, c.from)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per datagram", c.name, allocs)
		}
		if got := b.Stats().AuthFailures - before; got < 200 {
			t.Errorf("%s: %d auth failures counted, want >= 200", c.name, got)
		}
	}
}

// New0 starts a keyless transport on faultnet, even in the keyed suite.
func New0(t testing.TB, n *faultnet.Network, cfg ...Config) *Transport {
	t.Helper()
	c, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var cf Config
	if len(cfg) > 0 {
		cf = cfg[0]
	} else {
		cf = fastConfig()
	}
	tr, err := New(c, cf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestKeySealedPacketsFit: sealed datagrams (full KCP packets, batches of
// small unreliable messages, fragments) never exceed MaxPacketSize, and
// full ones use it.
func TestKeySealedPacketsFit(t *testing.T) {
	n := faultnet.New(14)
	k := testKey(t)
	bIn := newInbox()
	a, ta := listenTap(t, n, "127.0.0.1:0", keyedConfig(k))
	b := listenMem(t, n, bIn.config(keyedConfig(k)))
	a.Send(b.LocalAddr(), 1, make([]byte, 100_000))
	for i := range 300 {
		a.USend(b.LocalAddr(), 2, make([]byte, 1+i%maxBatchedPayload))
	}
	a.USend(b.LocalAddr(), 3, make([]byte, 10_000))
	if !bIn.waitFor(20*time.Second, func() bool { return countRel(bIn.msgs, true) == 1 && countRel(bIn.msgs, false) > 0 }) {
		t.Fatal("nothing arrived")
	}
	largest := 0
	for _, p := range ta.captured() {
		if len(p.data) > MaxPacketSize {
			t.Fatalf("a %d-byte datagram (type %#x), limit %d", len(p.data), p.data[0], MaxPacketSize)
		}
		largest = max(largest, len(p.data))
	}
	if largest < MaxPacketSize-10 {
		t.Errorf("largest sealed datagram %d bytes, want about %d", largest, MaxPacketSize)
	}
}
