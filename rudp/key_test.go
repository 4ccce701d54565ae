package rudp

import (
	"bytes"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

func testKey(t testing.TB) [32]byte {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeyedPair: two transports with the same key exchange reliable,
// unreliable, fragmented and large messages, over faultnet and real UDP.
func TestKeyedPair(t *testing.T) {
	k := testKey(t)
	for _, netw := range []string{"mem", "udp"} {
		t.Run(netw, func(t *testing.T) {
			aIn, bIn := newInbox(), newInbox()
			var a, b *Transport
			if netw == "mem" {
				n := faultnet.New(1)
				a = listenMem(t, n, aIn.config(Config{Keys: [][32]byte{k}}))
				b = listenMem(t, n, bIn.config(Config{Keys: [][32]byte{k}}))
			} else {
				a = listenUDP(t, aIn.config(Config{Keys: [][32]byte{k}}))
				b = listenUDP(t, bIn.config(Config{Keys: [][32]byte{k}}))
			}
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
			ufrag := bytes.Repeat([]byte("x"), 5000)
			// Unreliable first: it dials and waits for the session.
			if err := a.USend(b.LocalAddr(), 3, []byte("u-small")); err != nil {
				t.Fatal(err)
			}
			if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := a.Send(b.LocalAddr(), 2, big); err != nil {
				t.Fatal(err)
			}
			if err := b.Send(a.LocalAddr(), 1, []byte("back")); err != nil {
				t.Fatal(err)
			}
			if !bIn.waitFor(20*time.Second, func() bool { return countRel(bIn.msgs, true) == 2 }) {
				t.Fatalf("b got %d reliable messages, want 2", countRel(bIn.msgs, true))
			}
			if !aIn.waitFor(20*time.Second, func() bool { return countRel(aIn.msgs, true) == 1 }) {
				t.Fatal("a got no reply")
			}
			if err := a.USend(b.LocalAddr(), 4, ufrag); err != nil {
				t.Fatal(err)
			}
			if !bIn.waitFor(20*time.Second, func() bool { return countRel(bIn.msgs, false) == 2 }) {
				t.Fatalf("b got %d unreliable messages, want 2", countRel(bIn.msgs, false))
			}
			bIn.mu.Lock()
			for _, m := range bIn.msgs {
				switch m.kind {
				case 2:
					if !bytes.Equal(m.payload, big) {
						t.Error("big message corrupted")
					}
				case 3:
					if string(m.payload) != "u-small" {
						t.Errorf("unreliable %q", m.payload)
					}
				case 4:
					if !bytes.Equal(m.payload, ufrag) {
						t.Error("fragmented unreliable message corrupted")
					}
				}
			}
			bIn.mu.Unlock()
			st := b.Stats()
			if st.AuthFailures != 0 || st.Replays != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func countRel(msgs []received, reliable bool) int {
	n := 0
	for _, m := range msgs {
		if m.reliable == reliable {
			n++
		}
	}
	return n
}
