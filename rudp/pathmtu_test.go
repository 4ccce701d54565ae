package rudp

import (
	"bytes"
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
	got := tr.sessionMTU(lo)
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
	// 48 segments of at most t.kcpMSS bytes; with 16 KiB datagrams they fit
	// in 5. Retransmissions on a loaded machine may add a few.
	if n := cli.Stats().PacketsOut - before; n > 16 {
		t.Errorf("64 KiB message took %d datagrams, want about 5 (48 at the standard size)", n)
	}
}
