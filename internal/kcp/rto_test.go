package kcp

import (
	"encoding/binary"
	"testing"
	"time"
)

// sender is a KCP tuned as rudp tunes it, with an RTO floor fixed at
// 2 ms, and every packet it flushes kept.
func sender(t *testing.T) (*KCP, *collector) {
	t.Helper()
	useTestClock(t)
	k := NewKCP(7)
	k.NoDelay(1, 10, 1, 1)
	k.WndSize(128, 128)
	k.SetRTOFloor(2*time.Millisecond, 2*time.Millisecond)
	return k, &collector{}
}

// pushes lists the sequence numbers of the data segments in pkts.
func pushes(pkts [][]byte) []uint32 {
	var sns []uint32
	for _, p := range pkts {
		for len(p) >= IKCP_OVERHEAD {
			if p[4] == IKCP_CMD_PUSH {
				sns = append(sns, binary.LittleEndian.Uint32(p[12:]))
			}
			p = p[IKCP_OVERHEAD+int(binary.LittleEndian.Uint32(p[20:])):]
		}
	}
	return sns
}

// ackOf acknowledges sn, echoing ts, with una.
func ackOf(sn, ts, una uint32) []byte {
	p := ackSeg(7, sn, una, 128)
	binary.LittleEndian.PutUint32(p[8:], ts)
	return p
}

// TestRTOFollowsTheRoundTrip: on a steady 2 ms round trip the RTO is a few
// ms (kcp-go's nodelay floor was 30 ms plus the 10 ms interval), and it
// grows with the round trip's variation.
func TestRTOFollowsTheRoundTrip(t *testing.T) {
	k, out := sender(t)
	for i := range uint32(20) {
		k.Send([]byte("x"))
		k.Flush(IKCP_FLUSH_FULL, out)
		sent := testNow
		testNow += 2 * ms
		k.Input(ackOf(i, sent, i+1))
	}
	if rto := k.RTO(); rto < 3*time.Millisecond || rto > 4*time.Millisecond {
		t.Fatalf("RTO %v on a steady 2 ms round trip", rto)
	}
	steady := k.RTO()
	for i := uint32(20); i < 30; i++ {
		k.Send([]byte("x"))
		k.Flush(IKCP_FLUSH_FULL, out)
		sent := testNow
		testNow += (2 + 10*(i%2)) * ms // 2 and 12 ms in turn
		k.Input(ackOf(i, sent, i+1))
	}
	if k.RTO() <= 2*steady {
		t.Fatalf("RTO %v on a jittery round trip, %v steady", k.RTO(), steady)
	}
}

// TestFloorFollowsTheRetransmissions: the adaptive floor starts at the
// top; a retransmission whose transmission was the one that arrived (the
// earlier one was lost) halves it, down to the bottom; one that turns out
// needless (the acknowledgement echoes the earlier transmission) doubles
// it, and it covers the round trip that transmission took.
func TestFloorFollowsTheRetransmissions(t *testing.T) {
	k, out := sender(t)
	k.SetRTOFloor(2*time.Millisecond, 30*time.Millisecond)
	if k.rx_minrto != 30*ms {
		t.Fatalf("floor %d µs at the start, want 30 ms", k.rx_minrto)
	}
	// A fast retransmission, even a needed one, leaves it alone.
	k.Send([]byte("lost"))
	k.Send([]byte("next"))
	k.Flush(IKCP_FLUSH_FULL, out)
	testNow += ms
	k.Input(ackOf(1, testNow-ms, 0)) // 1 arrived, 0 did not
	k.Flush(IKCP_FLUSH_FULL, out)    // 0 again, at once
	if got := pushes(out.pkts); len(got) != 3 || got[2] != 0 {
		t.Fatalf("sent %v, want 0, 1 and 0 again", got)
	}
	k.Input(ackOf(0, testNow, 2))
	if k.rx_minrto != 30*ms {
		t.Fatalf("floor %d µs after a fast retransmission, want 30 ms still", k.rx_minrto)
	}
	sn := uint32(2)
	resend := func() (first, again uint32) {
		k.Send([]byte("x"))
		k.Flush(IKCP_FLUSH_FULL, out)
		first = testNow
		testNow += 100 * ms // the timer expired: sent again
		k.Flush(IKCP_FLUSH_FULL, out)
		return first, testNow
	}
	for _, want := range []uint32{15 * ms, 7500, 3750, 2 * ms, 2 * ms} {
		_, again := resend()
		if info, _ := k.Input(ackOf(sn, again, sn+1)); info.Needless != 0 {
			t.Fatal("a needed retransmission counted needless")
		}
		sn++
		if k.rx_minrto != want {
			t.Fatalf("floor %d µs after a lost segment, want %d", k.rx_minrto, want)
		}
	}
	first, _ := resend()
	testNow += 2 * ms
	if info, _ := k.Input(ackOf(sn, first, sn+1)); info.Needless != 1 || k.Needless() != 1 {
		t.Fatalf("needless %d (total %d), want 1", info.Needless, k.Needless())
	}
	if k.rx_minrto != 30*ms {
		t.Fatalf("floor %d µs after a needless retransmission of a segment that took 102 ms, want 30 ms (the top)", k.rx_minrto)
	}
}

// TestTailLossProbe: a lone segment whose RTO is long (a jittery path) is
// probed once, a probe timeout after it was sent, without backing off its
// timer; a segment with a later one acknowledged is sent again at once
// (the first evidence of a gap).
func TestTailLossProbe(t *testing.T) {
	k, out := sender(t)
	k.rx_srtt, k.rx_rttvar = 2*ms, 8*ms // RTO 34 ms, probe timeout 5 ms
	k.rx_rto = k.rtoNow()
	k.Send([]byte("lost"))
	k.Flush(IKCP_FLUSH_FULL, out)
	rto := k.snd_buf.elements[k.snd_buf.head].rto
	var probes int
	for range 20 { // 20 ms, all before the RTO
		testNow += ms
		info := k.Flush(IKCP_FLUSH_FULL, out)
		probes += info.Resent
		if info.Resent == 0 && info.Next <= 0 {
			t.Fatal("no timer due")
		}
	}
	if probes != 1 {
		t.Fatalf("%d probes within 20 ms, want 1", probes)
	}
	if seg := k.snd_buf.elements[k.snd_buf.head]; seg.rto != rto {
		t.Fatalf("the probe backed off the RTO: %d, was %d", seg.rto, rto)
	}

	// Fast retransmission: 0 lost, 1 acknowledged.
	k, out = sender(t)
	k.Send([]byte("a"))
	k.Send([]byte("b"))
	k.Flush(IKCP_FLUSH_FULL, out)
	out.pkts = nil
	info, _ := k.Input(ackOf(1, testNow, 0))
	if info.Flush != IKCP_FLUSH_FULL {
		t.Fatalf("a gap does not ask for a flush: %+v", info)
	}
	k.Flush(IKCP_FLUSH_FULL, out)
	if got := pushes(out.pkts); len(got) != 1 || got[0] != 0 {
		t.Fatalf("sent %v after the gap, want segment 0 again", got)
	}
}
