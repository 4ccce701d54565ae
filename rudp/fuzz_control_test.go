package rudp

import (
	"bytes"
	"testing"
	"time"
)

// FuzzControl feeds arbitrary bytes to the handshake and control decoders
// and to a live transport's control handling: decoding must round-trip,
// nothing may panic, and no forged packet ends the live session.
func FuzzControl(f *testing.F) {
	f.Add(handshake{typ: pktSyn, src: 1, dtok: 2}.append(nil))
	f.Add(handshake{typ: pktSynAck, src: 1, dst: 3, dtok: 2, rtok: 4}.append(nil))
	f.Add(handshake{typ: pktAck, src: 1, dst: 3, dtok: 2, rtok: 4}.append(nil))
	f.Add(tagged{typ: pktFin, conv: 5, tag: 6}.append(nil))
	f.Add(tagged{typ: pktNoSess, conv: 5, tag: 6}.append(nil))
	f.Add([]byte{pktRst})
	f.Add(caps{tagged: tagged{typ: pktCaps, conv: 5, tag: 6}, flags: capsAsk, maxPacket: 9000, maxSegment: 8000}.append(nil))
	cfg := Config{RetryTimeout: time.Minute}
	aIn, bIn := newInbox(), newInbox()
	a := listenUDP(f, aIn.config(cfg))
	b := listenUDP(f, bIn.config(cfg))
	if err := a.Send(b.LocalAddr(), 1, []byte("up")); err != nil {
		f.Fatal(err)
	}
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		f.Fatal("no session")
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if h, ok := parseHandshake(p); ok {
			if !bytes.Equal(h.append(nil), p) {
				t.Fatalf("handshake %+v does not round-trip", h)
			}
		}
		if c, ok := parseTagged(p); ok {
			if !bytes.Equal(c.append(nil), p) {
				t.Fatalf("control %+v does not round-trip", c)
			}
		}
		if c, ok := parseCaps(p); ok {
			n := capsSize // an older CAPS has no features: they read as 0
			if len(p) >= capsFullSize {
				n = capsFullSize
			}
			if b := c.append(nil); !bytes.Equal(b[:n], p[:n]) || n < capsFullSize && c.features != 0 {
				t.Fatalf("CAPS %+v does not round-trip", c)
			}
		}
		if len(p) > 0 && p[0] != pktKCP {
			b.handlePacket(p, a.LocalAddr())
		}
		b.mu.RLock()
		n := len(b.sessions)
		b.mu.RUnlock()
		if n != 1 {
			t.Fatalf("b has %d sessions after %x", n, p)
		}
		bIn.mu.Lock()
		downs := len(bIn.downs)
		bIn.mu.Unlock()
		if downs != 0 {
			t.Fatalf("b's session ended after %x", p)
		}
	})
}
