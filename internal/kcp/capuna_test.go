package kcp

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// lastAck is the una and window of the last segment of the last packet k
// output (out collects them).
func lastAck(t *testing.T, out *collector) (una uint32, wnd uint16) {
	t.Helper()
	if len(out.pkts) == 0 {
		t.Fatal("nothing was output")
	}
	p := out.pkts[len(out.pkts)-1]
	for len(p) >= IKCP_OVERHEAD {
		una = binary.LittleEndian.Uint32(p[16:])
		wnd = binary.LittleEndian.Uint16(p[6:])
		p = p[IKCP_OVERHEAD+int(binary.LittleEndian.Uint32(p[20:])):]
	}
	return una, wnd
}

// receiver is a KCP that took segments 0..n-1 of 1,000 bytes, in order.
func receiver(t *testing.T, n int) (*KCP, *collector) {
	t.Helper()
	out := &collector{}
	k := NewKCP(7)
	k.WndSize(32, 32)
	for sn := range uint32(n) {
		if _, err := k.Input(pushSeg(7, sn, 0, make([]byte, 1000))); err != nil {
			t.Fatalf("Input: %v", err)
		}
	}
	return k, out
}

// TestCapUnaHoldsTheUna: a flush reports the capped una, never more than
// rcv_nxt; the cap only moves forward.
func TestCapUnaHoldsTheUna(t *testing.T) {
	k, out := receiver(t, 10)
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if una, _ := lastAck(t, out); una != 10 {
		t.Fatalf("una %d without a cap, want 10", una)
	}
	k, out = receiver(t, 10)
	k.CapUna(3)
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if una, _ := lastAck(t, out); una != 3 {
		t.Fatalf("una %d with the cap at 3", una)
	}
	k.CapUna(2) // backwards: ignored
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if una, _ := lastAck(t, out); una != 3 {
		t.Fatalf("una %d after a cap moved back to 2, want 3", una)
	}
	k.CapUna(50) // beyond rcv_nxt: rcv_nxt
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if una, _ := lastAck(t, out); una != 10 {
		t.Fatalf("una %d with the cap past rcv_nxt, want 10", una)
	}
}

// TestCapUnaMoveIsSent: when only the cap moved, a flush with no acks owed
// still tells the peer (a window update carries the new una), once.
func TestCapUnaMoveIsSent(t *testing.T) {
	k, out := receiver(t, 4)
	k.CapUna(0)
	k.Flush(IKCP_FLUSH_ACKONLY, out) // the acks, una 0
	out.pkts = nil
	k.CapUna(4)
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if len(out.pkts) != 1 || !hasCmd(out.pkts[0], IKCP_CMD_WINS) {
		t.Fatalf("%d packets after the cap moved, want one window update", len(out.pkts))
	}
	if una, _ := lastAck(t, out); una != 4 {
		t.Fatalf("una %d, want 4", una)
	}
	out.pkts = nil
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if len(out.pkts) != 0 {
		t.Fatalf("%d packets with nothing new to say", len(out.pkts))
	}
}

// TestCapUnaWindowCountsFromUna: the peer counts its window from the una
// it sees, so the segments between a capped una and rcv_nxt are advertised
// on top of the room left; with no room the window is 0.
func TestCapUnaWindowCountsFromUna(t *testing.T) {
	k, out := receiver(t, 10)
	taken, _ := k.Take(nil, 1<<20) // the deliverer holds them, not yet acknowledged
	Release(taken)
	k.CapUna(2)
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	una, wnd := lastAck(t, out)
	if una != 2 || wnd != 32+8 {
		t.Fatalf("una %d window %d, want una 2 and window 32 free + 8 held past it", una, wnd)
	}
	// A full receive queue advertises 0 whatever the una.
	k, out = receiver(t, 32)
	k.CapUna(2)
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if _, wnd := lastAck(t, out); wnd != 0 {
		t.Fatalf("window %d with a full queue, want 0", wnd)
	}
}

// TestAckedCountsSelectiveAcks: a receiver whose una is capped still
// acknowledges each segment; the sender counts them in Acked although
// they stay in its send buffer until the una passes them.
func TestAckedCountsSelectiveAcks(t *testing.T) {
	l := cappedLink(t, 5)
	if got := l.a.Acked(); got != 5 {
		t.Fatalf("Acked %d, want 5", got)
	}
	if w := l.a.WaitSnd(); w != 5 {
		t.Fatalf("%d segments wait, want 5 (the una did not move)", w)
	}
	l.b.CapUna(5)
	l.step(t)
	l.step(t)
	if got, w := l.a.Acked(), l.a.WaitSnd(); got != 5 || w != 0 {
		t.Fatalf("after the una moved: Acked %d (want 5, counted once), %d waiting", got, w)
	}
}

// TestTakeWholeMessages: Take hands out whole messages in order, at least
// max bytes when there are that many, and frees the room they held.
func TestTakeWholeMessages(t *testing.T) {
	k := NewKCP(7)
	k.WndSize(32, 32)
	k.SetRecvLimit(32 * 1536)
	// A message of three segments (frg 2, 1, 0), then two of one.
	for sn, frg := range []uint8{2, 1, 0, 0, 0} {
		p := pushSeg(7, uint32(sn), 0, bytes.Repeat([]byte{byte(sn)}, 1000))
		p[5] = frg
		k.Input(p)
	}
	held := k.RecvHeld()
	got, n := k.Take(nil, 1500)
	if len(got) != 3 || n != 3000 {
		t.Fatalf("took %d segments, %d bytes; want the whole first message (3, 3000)", len(got), n)
	}
	if k.Pulled() != 3 || k.RecvHeld() >= held {
		t.Fatalf("pulled %d, holds %d of %d", k.Pulled(), k.RecvHeld(), held)
	}
	Release(got)
	if got[0] != nil {
		t.Fatal("Release left the slices")
	}
	got, n = k.Take(got[:0], 1<<20)
	if len(got) != 2 || n != 2000 || got[1][0] != 4 {
		t.Fatalf("took %d segments, %d bytes", len(got), n)
	}
	Release(got)
	if got, n = k.Take(got[:0], 1<<20); len(got) != 0 || n != 0 || k.RecvHeld() != 0 {
		t.Fatalf("took %d more, holds %d", n, k.RecvHeld())
	}
}

// TestLostUnaIsAskedFor: when every segment in flight was acknowledged one
// by one but the packet carrying the una that releases them was lost, the
// sender asks for it (WASK) once the head segment's timer expires, and the
// receiver's answer (WINS) releases them: nothing is stuck waiting for a
// packet neither side would send again.
func TestLostUnaIsAskedFor(t *testing.T) {
	l := cappedLink(t, 3)
	if l.a.Acked() != 3 || l.a.WaitSnd() != 3 {
		t.Fatalf("acked %d, waiting %d; want 3 and 3", l.a.Acked(), l.a.WaitSnd())
	}
	l.b.CapUna(3)
	l.b.Flush(IKCP_FLUSH_ACKONLY, l.outB) // the una goes out ...
	l.toA = nil                           // ... and is lost
	for i := 0; i < 100 && l.a.WaitSnd() > 0; i++ {
		l.step(t)
	}
	if w := l.a.WaitSnd(); w != 0 {
		t.Fatalf("%d segments still wait for a una that was lost", w)
	}
}

// cappedLink is a link on which a sent n segments that b, its una capped
// at 0, acknowledged one by one, and a has read those acknowledgements.
func cappedLink(t *testing.T, n int) *link {
	useTestClock(t)
	l := newLink(1399, 0, false)
	l.b.CapUna(0)
	for range n {
		l.a.Send(make([]byte, 100))
	}
	l.a.Flush(IKCP_FLUSH_FULL, l.outA)
	l.step(t) // b takes the segments and acknowledges them one by one
	l.step(t) // a reads the acknowledgements
	return l
}
