package rudp

import (
	"bytes"

	"github.com/marsmesh/marsmesh/internal/kcp"
	"github.com/marsmesh/marsmesh/rudp/faultnet"
	"net/netip"
	"testing"
	"time"
)

func TestSessionMTU(t *testing.T) {
	tr, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	lo := netip.MustParseAddrPort("127.0.0.1:9")
	link := tr.paths.linkMTU(tr.local.Addr(), lo.Addr())
	got := tr.sessionMTU(lo, maxWirePacket)
	switch {
	case link >= maxWirePacket+28 && got != tr.kcpMTU+maxWirePacket-MaxPacketSize:
		t.Errorf("loopback MTU %d: session MTU %d, want %d", link, got, tr.kcpMTU+maxWirePacket-MaxPacketSize)
	case link < MaxPacketSize+28 && got != tr.kcpMTU:
		t.Errorf("loopback MTU %d: session MTU %d, want the standard %d", link, got, tr.kcpMTU)
	}
	if got < tr.kcpMTU || got > tr.kcpMTU+maxWirePacket-MaxPacketSize {
		t.Errorf("session MTU %d outside [%d, %d]", got, tr.kcpMTU, tr.kcpMTU+maxWirePacket-MaxPacketSize)
	}
	if link := lookupLinkMTU(netip.IPv4Unspecified(), lo.Addr()); link == 0 {
		t.Log("no interface found for the route to 127.0.0.1 (lookup through a connected socket)")
	}
}

// TestLargeMessageFewDatagrams: over loopback (MTU 65,536) a 64 KiB
// message leaves in datagrams of up to maxWirePacket bytes, and arrives
// whole.
func TestLargeMessageFewDatagrams(t *testing.T) {
	box := newInbox()
	srv, err := Listen("127.0.0.1:0", box.config(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if link := cli.paths.linkMTU(cli.local.Addr(), srv.local.Addr()); link < maxWirePacket+28 {
		t.Skipf("loopback MTU %d: no room for bigger datagrams", link)
	}
	if err := cli.Send(srv.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !box.waitFor(10*time.Second, func() bool { return len(box.msgs) == 1 }) {
		t.Fatal("first message not delivered")
	}
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	before := cli.Stats().PacketsOut
	if err := cli.Send(srv.LocalAddr(), 2, msg); err != nil {
		t.Fatal(err)
	}
	if !box.waitFor(10*time.Second, func() bool { return len(box.msgs) == 2 }) {
		t.Fatal("64 KiB message not delivered")
	}
	box.mu.Lock()
	got := box.msgs[1].payload
	box.mu.Unlock()
	if !bytes.Equal(got, msg) {
		t.Fatalf("64 KiB message arrived with %d bytes, not as sent", len(got))
	}
	// 5 segments of up to 16 KiB; with 63 KiB datagrams they fit in 2.
	// Retransmissions on a loaded machine may add a few.
	if n := cli.Stats().PacketsOut - before; n > 8 {
		t.Errorf("64 KiB message took %d datagrams, want about 2 (48 at the standard size)", n)
	}
}

// segmentsFor sends a 64 KiB message from a to b and reports the session's
// segment size and how many KCP segments the message took.
func segmentsFor(t *testing.T, a, b *Transport, box *inbox) (mss int, segs uint64) {
	t.Helper()
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !box.waitFor(10*time.Second, func() bool { return len(box.msgs) == 1 }) {
		t.Fatal("first message not delivered")
	}
	s := a.lookup(b.LocalAddr())
	s.mu.Lock()
	before := s.pushed
	s.mu.Unlock()
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	if err := a.Send(b.LocalAddr(), 2, msg); err != nil {
		t.Fatal(err)
	}
	if !box.waitFor(10*time.Second, func() bool { return len(box.msgs) == 2 }) {
		t.Fatal("64 KiB message not delivered")
	}
	box.mu.Lock()
	got := box.msgs[1].payload
	box.mu.Unlock()
	if !bytes.Equal(got, msg) {
		t.Fatal("64 KiB message arrived changed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mss, s.pushed - before
}

// TestSegmentsFollowPath: segments grow with the session's packets, to
// kcp.MaxSegmentData, so a 64 KiB message is 5 segments over loopback UDP
// and 48 at the standard size (the in-memory network keeps it).
func TestSegmentsFollowPath(t *testing.T) {
	t.Run("udp", func(t *testing.T) {
		box := newInbox()
		b := listenUDP(t, box.config(Config{}))
		a := listenUDP(t, Config{})
		if link := a.paths.linkMTU(a.local.Addr(), b.local.Addr()); link < maxWirePacket+28 {
			t.Skipf("loopback MTU %d: no room for bigger segments", link)
		}
		mss, segs := segmentsFor(t, a, b, box)
		if mss != kcp.MaxSegmentData || segs > 5 {
			t.Fatalf("segment size %d, %d segments for 64 KiB; want %d bytes, at most 5", mss, segs, kcp.MaxSegmentData)
		}
	})
	t.Run("mem", func(t *testing.T) {
		n := faultnet.New(21)
		box := newInbox()
		b := listenMem(t, n, box.config(Config{}))
		a := listenMem(t, n, Config{})
		mss, segs := segmentsFor(t, a, b, box)
		if want := (65536 + frameHeaderSize + a.kcpMSS - 1) / a.kcpMSS; mss != a.kcpMSS || segs != uint64(want) {
			t.Fatalf("segment size %d, %d segments for 64 KiB; want %d bytes, %d segments", mss, segs, a.kcpMSS, want)
		}
	})
}

// TestPausedReceiverBounded: a paused receiver of large segments holds no
// more than its receive limit (about 2x Config.RecvWindow x 1,536 bytes),
// however much the sender queues, and delivers everything on Resume.
func TestPausedReceiverBounded(t *testing.T) {
	run := func(t *testing.T, a, b *Transport, box *inbox) {
		if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if !box.waitFor(10*time.Second, func() bool { return len(box.msgs) == 1 }) {
			t.Fatal("first message not delivered")
		}
		b.Pause(a.LocalAddr())
		msg := bytes.Repeat([]byte{7}, 256<<10)
		const count = 16 // 4 MiB, more than the limit
		for range count {
			if err := a.Send(b.LocalAddr(), 2, msg); err != nil {
				t.Fatal(err)
			}
		}
		limit := b.cfg.RecvWindow * recvBytesPerSegment
		const seg = kcp.MaxSegmentData + kcp.IKCP_OVERHEAD // a segment buffer's size
		rs := b.lookup(a.LocalAddr())
		held := func() int {
			rs.mu.Lock()
			defer rs.mu.Unlock()
			return rs.kcp.RecvHeld()
		}
		// The receiver fills up to its limit (then its window closes).
		waitUntil(t, 10*time.Second, func() bool { return held() >= limit-seg })
		if h := held(); h > 2*limit+seg {
			t.Fatalf("paused receiver holds %d bytes, limit %d", h, limit)
		}
		b.Resume(a.LocalAddr())
		if !box.waitFor(30*time.Second, func() bool { return len(box.msgs) == 1+count }) {
			t.Fatalf("%d of %d messages after Resume", box.count()-1, count)
		}
	}
	t.Run("udp", func(t *testing.T) {
		box := newInbox()
		b := listenUDP(t, box.config(Config{RecvWindow: 256}))
		a := listenUDP(t, Config{})
		run(t, a, b, box)
	})
	t.Run("mem", func(t *testing.T) {
		n := faultnet.New(22)
		box := newInbox()
		b := listenMem(t, n, box.config(Config{RecvWindow: 256}))
		a := listenMem(t, n, Config{})
		run(t, a, b, box)
	})
}
