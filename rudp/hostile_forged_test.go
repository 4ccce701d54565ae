package rudp

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// Forged control packets (issue 10, findings 4 and 7): an attacker who
// knows both incarnations (MARS publishes them) and can forge the source
// address, but does not see the traffic, must not end or displace a
// session.

// legacyControl is the 21-byte control packet of earlier versions:
// [type][src inc u64][dst inc u64][conv u32], conv derived from the
// incarnations alone.
func legacyControl(typ byte, src, dst uint64) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint64(b, src)
	b = binary.BigEndian.AppendUint64(b, dst)
	x := src ^ dst
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return binary.BigEndian.AppendUint32(b, uint32(x)^uint32(x>>32))
}

// forgeries is every control packet an off-path attacker can build from
// the incarnations of victim v and its peer p.
func forgeries(rng *rand.Rand, p, v uint64) [][]byte {
	var out [][]byte
	for _, typ := range []byte{pktSyn, pktSynAck, pktPing, pktFin, pktRst} {
		out = append(out, legacyControl(typ, p, v))
	}
	for _, typ := range []byte{pktPing, pktFin, pktRst, pktNoSess} {
		out = append(out, tagged{typ: typ, conv: rng.Uint32(), tag: rng.Uint64()}.append(nil))
	}
	for _, typ := range []byte{pktSyn, pktSynAck, pktAck} {
		out = append(out,
			handshake{typ: typ, src: p, dst: v, dtok: rng.Uint64() | 1, rtok: rng.Uint64()}.append(nil),
			handshake{typ: typ, src: rng.Uint64() | 1, dst: v, dtok: rng.Uint64() | 1, rtok: rng.Uint64()}.append(nil))
	}
	return out
}

// TestHostileForgedControlKillsNothing: forged FIN, RST, PING, SYN and
// ACK packets from a peer's address, in bulk while tracked messages are
// in flight, end nothing and lose nothing.
func TestHostileForgedControlKillsNothing(t *testing.T) {
	n := faultnet.New(400)
	aIn, bIn := newInbox(), newInbox()
	cfg := forgeConfig()
	a := listenMem(t, n, aIn.config(cfg))
	b := listenMem(t, n, bIn.config(cfg))
	if err := a.Send(b.LocalAddr(), 1, []byte("up")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("no session")
	}
	incA, incB := a.Incarnation(), b.Incarnation()
	rng := rand.New(rand.NewPCG(4, 0))
	results := make(chan error, 200)
	for i := range 200 {
		if err := a.SendTracked(b.LocalAddr(), 1, nil, make([]byte, 2000), func(err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
		for _, p := range forgeries(rng, incA, incB) {
			n.Inject(a.LocalAddr(), b.LocalAddr(), p) // to b, "from" a
		}
		for _, p := range forgeries(rng, incB, incA) {
			n.Inject(b.LocalAddr(), a.LocalAddr(), p)
		}
		if i%20 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 200 {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("tracked message %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tracked message %d: no outcome", i)
		}
	}
	noDowns(t, aIn, bIn)
	if st, _ := a.Peer(b.LocalAddr()); st.Incarnation != incB || !st.Established {
		t.Fatalf("a's session %+v", st)
	}
	if st, _ := b.Peer(a.LocalAddr()); st.Incarnation != incA || !st.Established {
		t.Fatalf("b's session %+v", st)
	}
	if st := b.Stats(); st.BadPackets+st.AuthFailures == 0 { // keyed: they do not open
		t.Fatal("forgeries not counted as bad packets")
	}
}

// TestHostileForgedSynDoesNotDisplace: a SYN (and a guessed ACK) with a
// new incarnation from a live peer's address over real UDP gets a
// SYN-ACK sent to that address and nothing else: the session stays.
func TestHostileForgedSynDoesNotDisplace(t *testing.T) {
	aIn, bIn := newInbox(), newInbox()
	a := listenUDP(t, aIn.config(forgeConfig()))
	b := listenUDP(t, bIn.config(forgeConfig()))
	if err := a.Send(b.LocalAddr(), 1, []byte("up")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("no session")
	}
	incA := a.Incarnation()
	rng := rand.New(rand.NewPCG(5, 0))
	for range 1000 {
		fake := rng.Uint64() | 1
		tok := rng.Uint64() | 1
		// As if read from the socket with a's address as the source.
		b.handlePacket(handshake{typ: pktSyn, src: fake, dtok: tok}.append(nil), a.LocalAddr())
		b.handlePacket(handshake{typ: pktAck, src: fake, dst: b.Incarnation(), dtok: tok, rtok: rng.Uint64()}.append(nil), a.LocalAddr())
		b.handlePacket(handshake{typ: pktAck, src: incA, dst: b.Incarnation(), dtok: tok, rtok: rng.Uint64()}.append(nil), a.LocalAddr())
	}
	// The session still carries traffic both ways, with the same peer.
	a.Send(b.LocalAddr(), 1, []byte("after"))
	b.Send(a.LocalAddr(), 1, []byte("after"))
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 2 }) ||
		!aIn.waitFor(5*time.Second, func() bool { return len(aIn.msgs) == 1 }) {
		t.Fatal("traffic stopped after forged SYNs")
	}
	if st, _ := b.Peer(a.LocalAddr()); st.Incarnation != incA {
		t.Fatalf("b's session is with %x, want %x", st.Incarnation, incA)
	}
	noDowns(t, aIn, bIn)
}

// TestHostileNoSessWithRightConvKillsNothing: even an on-path NOSESS with
// the session's conversation id only makes the victim probe; the live
// peer answers with its own incarnation and the session stays.
func TestHostileNoSessWithRightConvKillsNothing(t *testing.T) {
	aIn, bIn := newInbox(), newInbox()
	a := listenUDP(t, aIn.config(forgeConfig()))
	b := listenUDP(t, bIn.config(forgeConfig()))
	a.Send(b.LocalAddr(), 1, []byte("up"))
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("no session")
	}
	s := a.lookup(b.LocalAddr())
	s.mu.Lock()
	conv := s.conv
	s.mu.Unlock()
	for range 5 {
		a.handlePacket(tagged{typ: pktNoSess, conv: conv, tag: 12345}.append(nil), b.LocalAddr())
		time.Sleep(testTimeout / 4)
	}
	a.Send(b.LocalAddr(), 1, []byte("after"))
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 2 }) {
		t.Fatal("traffic stopped")
	}
	noDowns(t, aIn, bIn)
}

// forgeConfig is fastConfig with a retry timeout long enough that a
// loaded machine never ends a session by silence in these tests.
func forgeConfig() Config {
	c := fastConfig()
	c.RetryTimeout = 20 * time.Second
	return c
}

func noDowns(t *testing.T, ins ...*inbox) {
	t.Helper()
	for _, in := range ins {
		in.mu.Lock()
		downs := append([]peerDown(nil), in.downs...)
		in.mu.Unlock()
		for _, d := range downs {
			t.Errorf("session with %s ended: %v", d.addr, d.err)
		}
	}
}
