package rudp

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestFirstMessageOverUDP(t *testing.T) {
	a := listenUDP(t, Config{})
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	start := time.Now()
	if err := a.Send(b.LocalAddr(), 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("message not delivered")
	}
	t.Logf("first message (with handshake) took %v", time.Since(start))
}

func TestSizesOverUDP(t *testing.T) {
	a := listenUDP(t, Config{})
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	sizes := []int{0, 1, 1299, 1300, 1301, 65536, 1 << 20, MaxMessageSize}
	var want [][]byte
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i*31 + j*7)
		}
		want = append(want, p)
		if err := a.Send(b.LocalAddr(), byte(i), p); err != nil {
			t.Fatalf("send %d bytes: %v", n, err)
		}
	}
	if !bIn.waitFor(30*time.Second, func() bool { return len(bIn.msgs) == len(sizes) }) {
		t.Fatalf("got %d of %d messages", bIn.count(), len(sizes))
	}
	for i, m := range bIn.msgs {
		if m.kind != byte(i) || !bytes.Equal(m.payload, want[i]) || !m.reliable {
			t.Fatalf("message %d: kind %d, %d bytes, want kind %d, %d bytes", i, m.kind, len(m.payload), i, len(want[i]))
		}
	}
	err := a.Send(b.LocalAddr(), 9, make([]byte, MaxMessageSize+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized send: %v, want ErrTooLarge", err)
	}
	// Split across parts, the limit still holds.
	err = a.Send(b.LocalAddr(), 9, make([]byte, MaxMessageSize), []byte{1})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized send in parts: %v, want ErrTooLarge", err)
	}
}

// TestHeaderRoom: a header rides on top of a full-size body, and each has
// its own limit.
func TestHeaderRoom(t *testing.T) {
	a := listenUDP(t, Config{})
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	hdr := []byte("header")
	body := make([]byte, MaxMessageSize)
	body[len(body)-1] = 0xAB
	if err := a.SendWithHeader(b.LocalAddr(), 3, hdr, body); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(30*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("the reliable message did not arrive")
	}
	// Unreliable, so sent after the 10 MB arrived, not into its flood: a
	// datagram that finds the receiver's socket buffer full (its read
	// loop short of CPU) is lost, and nothing sends it again.
	if err := a.USendWithHeader(b.LocalAddr(), 4, hdr, []byte("small")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(30*time.Second, func() bool { return len(bIn.msgs) == 2 }) {
		t.Fatalf("got %d of 2", bIn.count())
	}
	for _, m := range bIn.msgs {
		switch m.kind {
		case 3:
			if len(m.payload) != len(hdr)+MaxMessageSize || string(m.payload[:6]) != "header" || m.payload[len(m.payload)-1] != 0xAB {
				t.Fatalf("reliable message of %d bytes is wrong", len(m.payload))
			}
		case 4:
			if string(m.payload) != "headersmall" {
				t.Fatalf("unreliable message %q", m.payload)
			}
		}
	}
	for _, err := range []error{
		a.SendWithHeader(b.LocalAddr(), 3, hdr, make([]byte, MaxMessageSize+1)),
		a.SendWithHeader(b.LocalAddr(), 3, make([]byte, MaxHeaderSize+1), nil),
		a.USendWithHeader(b.LocalAddr(), 3, hdr, make([]byte, MaxMessageSize+1)),
	} {
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("oversized: %v, want ErrTooLarge", err)
		}
	}
}
