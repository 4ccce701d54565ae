package rudp

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// keyedLivePair is a keyed pair with an established session, for fuzzing.
func keyedLivePair(f *testing.F) (a, b *Transport, bIn *inbox) {
	k := testKey(f)
	cfg := Config{RetryTimeout: time.Minute, Keys: [][32]byte{k}}
	bIn = newInbox()
	a = listenUDP(f, cfg)
	b = listenUDP(f, bIn.config(cfg))
	if err := a.Send(b.LocalAddr(), 1, []byte("up")); err != nil {
		f.Fatal(err)
	}
	if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		f.Fatal("no session")
	}
	return a, b, bIn
}

func checkSessionIntact(t *testing.T, b *Transport, bIn *inbox, delivered int, p []byte) {
	t.Helper()
	b.mu.RLock()
	n := len(b.sessions)
	b.mu.RUnlock()
	bIn.mu.Lock()
	downs, msgs := len(bIn.downs), len(bIn.msgs)
	bIn.mu.Unlock()
	if n != 1 || downs != 0 || msgs != delivered {
		t.Fatalf("after %x: %d sessions, %d ended, %d messages (want 1, 0, %d)", p, n, downs, msgs, delivered)
	}
}

// FuzzOpen: the session packet opener. Arbitrary bytes never open and
// change nothing on a live keyed transport; any inner packet sealed with
// the session keys opens to itself exactly once (a second copy is a
// replay), and with a flipped bit not at all; a live transport survives
// whatever the peer seals.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{pktKCP, 1, 2, 3, 4})
	f.Add([]byte{pktDatagram, 1, 'h', 'i'})
	f.Add([]byte{pktDatagramBatch, 1, 0, 2, 'h', 'i'})
	f.Add(tagged{typ: pktPing, conv: 1, tag: 2}.append(nil))
	f.Add(append([]byte{pktSealed, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 40)...))
	f.Add(append([]byte{pktSealedHS}, make([]byte, sealedHSSize-1)...))
	a, b, bIn := keyedLivePair(f)
	me := hsSide{inc: 1, tok: 2, eph: make([]byte, 32)}
	peer := hsSide{inc: 3, tok: 4, eph: make([]byte, 32)}
	tx := newSessCrypto(make([]byte, 32), me, peer)
	rx := newSessCrypto(make([]byte, 32), peer, me)
	var nonce [12]byte
	live := a.lookup(b.LocalAddr()).sec.crypto.Load()
	f.Fuzz(func(t *testing.T, p []byte) {
		// Raw bytes: nothing opens, nothing changes.
		delivered := bIn.count()
		q := append([]byte(nil), p...)
		if len(q) > 0 {
			if _, ok, _ := rx.open(q, &nonce); ok {
				t.Fatalf("%x opened without a key", p)
			}
			b.handlePacket(append([]byte(nil), p...), a.LocalAddr())
		}
		checkSessionIntact(t, b, bIn, delivered, p)
		if len(p) == 0 || len(p) > MaxPacketSize-SealOverhead {
			return
		}
		// Sealed: opens once to itself.
		sealed := tx.seal(append(make([]byte, sealHeader, sealHeader+len(p)+tagSize), p...), &nonce)
		flipped := append([]byte(nil), sealed...)
		flipped[len(flipped)/2] ^= 0x10
		if _, ok, _ := rx.open(flipped, &nonce); ok {
			t.Fatal("a flipped packet opened")
		}
		again := append([]byte(nil), sealed...)
		inner, ok, _ := rx.open(sealed, &nonce)
		if !ok || !bytes.Equal(inner, p) {
			t.Fatalf("sealed %x opened to %x, %v", p, inner, ok)
		}
		if _, ok, replay := rx.open(again, &nonce); ok || !replay {
			t.Fatal("a replay opened")
		}
		// Sealed by the live peer: whatever the inner packet says, no panic.
		if p[0] != pktKCP && p[0] != pktFin && p[0] != pktRst {
			b.handlePacket(live.seal(append(make([]byte, sealHeader, sealHeader+len(p)+tagSize), p...), &nonce), a.LocalAddr())
		}
	})
}

// FuzzHandshake: handshake packets with keys. Raw bytes and arbitrary
// handshakes sealed with the cluster key (what a key holder could send,
// with a fresh timestamp or not) never panic and never end, replace or
// add a session: without a valid token nothing is created.
func FuzzHandshake(f *testing.F) {
	f.Add(handshake{typ: pktSyn, src: 1, dtok: 2}.appendKeyed(nil), true, uint16(0))
	f.Add(handshake{typ: pktSynAck, src: 1, dst: 3, dtok: 2, rtok: 4}.appendKeyed(nil), true, uint16(1))
	f.Add(handshake{typ: pktAck, src: 1, dst: 3, dtok: 2, rtok: 4}.appendKeyed(nil), false, uint16(2))
	f.Add([]byte{pktSealedHS, 1, 2}, false, uint16(3))
	a, b, bIn := keyedLivePair(f)
	f.Fuzz(func(t *testing.T, p []byte, fresh bool, port uint16) {
		from := a.LocalAddr()
		if port%2 == 1 {
			from = netipPort(from, port)
		}
		b.handlePacket(append([]byte(nil), p...), from)
		checkSessionIntact(t, b, bIn, 1, p)
		inner := make([]byte, keyedHSSize)
		copy(inner, p)
		if len(p) >= 17 && p[len(p)-1]&1 == 1 {
			// Aimed at the live session: b's incarnation as destination.
			copy(inner[9:17], beUint64(b.Incarnation()))
		}
		if fresh {
			copy(inner[keyedHSSize-8:], beUint64(uint64(time.Now().UnixNano())))
		}
		var buf [sealedHSSize]byte
		buf[0] = pktSealedHS
		copy(buf[1:hsHeader], p)
		out := b.ks.hsAEAD[0].Seal(buf[:hsHeader], buf[1:hsHeader], inner, buf[:1])
		b.handlePacket(out, from)
		b.handlePacket(append([]byte(nil), out...), from) // a replay
		checkSessionIntact(t, b, bIn, 1, p)
	})
}

func beUint64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func netipPort(a netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr(), max(port, 1))
}
