package kcp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// link joins two state machines through in-memory packet queues, with
// optional loss and reordering, on a clock the test advances.
type link struct {
	a, b     *KCP
	toA, toB [][]byte
	rng      *rand.Rand
	loss     float64 // drop probability per packet
	shuffle  bool    // deliver queued packets in random order
	maxPkt   int
}

var testNow uint32

func useTestClock(t *testing.T) {
	old := currentMs
	testNow = 1000
	currentMs = func() uint32 { return testNow }
	t.Cleanup(func() { currentMs = old })
}

func newLink(mtu int, loss float64, shuffle bool) *link {
	l := &link{rng: rand.New(rand.NewPCG(1, 2)), loss: loss, shuffle: shuffle}
	l.a = NewKCP(7, func(buf []byte, n int) { l.toB = l.send(l.toB, buf[:n]) })
	l.b = NewKCP(7, func(buf []byte, n int) { l.toA = l.send(l.toA, buf[:n]) })
	for _, k := range []*KCP{l.a, l.b} {
		k.NoDelay(1, 10, 2, 1)
		k.WndSize(128, 128)
		if k.SetMtu(mtu) != 0 {
			panic("SetMtu")
		}
		k.SetRecvLimit(128 * 1536)
	}
	return l
}

func (l *link) send(q [][]byte, p []byte) [][]byte {
	l.maxPkt = max(l.maxPkt, len(p))
	if l.rng.Float64() < l.loss {
		return q
	}
	return append(q, bytes.Clone(p))
}

// step delivers what is queued each way, then advances the clock and
// runs both timers.
func (l *link) step(t *testing.T) {
	for _, d := range []struct {
		q  *[][]byte
		to *KCP
	}{{&l.toA, l.a}, {&l.toB, l.b}} {
		q := *d.q
		*d.q = nil
		if l.shuffle {
			l.rng.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
		}
		for _, p := range q {
			if r := d.to.Input(p, IKCP_PACKET_REGULAR, false); r != 0 {
				t.Fatalf("Input: %d", r)
			}
		}
	}
	testNow += 5
	l.a.Flush(IKCP_FLUSH_FULL)
	l.b.Flush(IKCP_FLUSH_FULL)
}

func recvAll(k *KCP) []byte {
	var out []byte
	for k.RecvFunc(func(p []byte) { out = append(out, p...) }) {
	}
	return out
}

func TestLargeSegmentsRoundTrip(t *testing.T) {
	useTestClock(t)
	for _, tc := range []struct {
		name    string
		mtu     int
		loss    float64
		shuffle bool
	}{
		{"standard", 1399, 0, false},
		{"64KiB packets", MaxMTU, 0, false},
		{"64KiB packets lossy reordered", MaxMTU, 0.2, true},
		{"standard lossy reordered", 1399, 0.2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLink(tc.mtu, tc.loss, tc.shuffle)
			var want []byte
			for i, n := range []int{1, 100, 1375, 16360, 16361, 65536 + 40, 300 << 10} {
				msg := make([]byte, n)
				for j := range msg {
					msg[j] = byte(i*131 + j*7)
				}
				want = append(want, msg...)
				// Pieces of at most one segment, as rudp sends them.
				for len(msg) > 0 {
					c := min(len(msg), l.a.Mss())
					if l.a.Send(msg[:c]) != 0 {
						t.Fatal("Send")
					}
					msg = msg[c:]
				}
			}
			var got []byte
			for i := 0; i < 5000 && len(got) < len(want); i++ {
				l.step(t)
				got = append(got, recvAll(l.b)...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("received %d bytes, want %d (equal prefix: %v)", len(got), len(want), bytes.HasPrefix(want, got))
			}
			if l.maxPkt > tc.mtu {
				t.Fatalf("a packet of %d bytes, MTU %d", l.maxPkt, tc.mtu)
			}
			if tc.mtu == MaxMTU && l.maxPkt <= 1500 {
				t.Fatalf("largest packet %d bytes: segments did not grow", l.maxPkt)
			}
		})
	}
}

func TestSegmentSizeLimits(t *testing.T) {
	k := NewKCP(7, func([]byte, int) {})
	if k.SetMtu(MaxMTU+1) == 0 {
		t.Fatal("SetMtu above MaxMTU accepted")
	}
	if k.SetMtu(MaxMTU) != 0 || k.Mss() != MaxSegmentData {
		t.Fatalf("SetMtu(MaxMTU): mss %d", k.Mss())
	}
	if k.SetMtu(4000) != 0 || k.Mss() != 4000-IKCP_OVERHEAD {
		t.Fatalf("SetMtu(4000): mss %d", k.Mss())
	}
	k.Send([]byte("x"))
	if k.SetMtu(1400) == 0 {
		t.Fatal("SetMtu with data queued accepted")
	}
	// A segment declaring more than MaxSegmentData is refused, even when
	// the packet holds that much.
	p := pushSeg(7, 0, 0, make([]byte, MaxSegmentData+1))
	r := NewKCP(7, func([]byte, int) {})
	r.WndSize(32, 32)
	if got := r.Input(p, IKCP_PACKET_REGULAR, false); got != -2 {
		t.Fatalf("Input of an oversized segment: %d, want -2", got)
	}
	if got := r.Input(pushSeg(7, 0, 0, make([]byte, MaxSegmentData)), IKCP_PACKET_REGULAR, false); got != 0 {
		t.Fatalf("Input of a MaxSegmentData segment: %d", got)
	}
	if n := len(recvAll(r)); n != MaxSegmentData {
		t.Fatalf("received %d bytes", n)
	}
}

func pushSeg(conv uint32, sn uint32, una uint32, data []byte) []byte {
	p := make([]byte, IKCP_OVERHEAD, IKCP_OVERHEAD+len(data))
	binary.LittleEndian.PutUint32(p, conv)
	p[4] = IKCP_CMD_PUSH
	binary.LittleEndian.PutUint16(p[6:], 128)
	binary.LittleEndian.PutUint32(p[12:], sn)
	binary.LittleEndian.PutUint32(p[16:], una)
	binary.LittleEndian.PutUint32(p[20:], uint32(len(data)))
	return append(p, data...)
}

// checkHeld recomputes the counters from the queues.
func checkHeld(t testing.TB, k *KCP) {
	q, b := 0, 0
	for s := range k.rcv_queue.ForEach {
		q += cap(s.data)
	}
	for _, s := range k.rcv_buf.segs {
		b += cap(s.data)
	}
	if q != k.queueBytes || b != k.bufBytes {
		t.Fatalf("counted %d queued, %d out of order; hold %d, %d", k.queueBytes, k.bufBytes, q, b)
	}
}

func TestRecvLimit(t *testing.T) {
	const limit = 64 << 10
	var out [][]byte
	k := NewKCP(7, func(buf []byte, n int) { out = append(out, bytes.Clone(buf[:n])) })
	k.WndSize(1024, 1024)
	k.SetMtu(MaxMTU)
	k.SetRecvLimit(limit)
	seg := make([]byte, MaxSegmentData)
	// Out of order (sn 1..): accepted up to the limit, then dropped
	// without an acknowledgement.
	for sn := uint32(1); sn < 20; sn++ {
		k.Input(pushSeg(7, sn, 0, seg), IKCP_PACKET_REGULAR, false)
	}
	checkHeld(t, k)
	if k.RecvHeld() > limit {
		t.Fatalf("holds %d bytes out of order, limit %d", k.RecvHeld(), limit)
	}
	acked := len(k.acklist)
	if segCap := bufClass(MaxSegmentData); acked != limit/segCap {
		t.Fatalf("%d segments acknowledged, want %d", acked, limit/segCap)
	}
	if w := k.wnd_unused(); w != 0 {
		t.Fatalf("advertises %d segments at the limit", w)
	}
	// The next expected segment still gets in, and everything held
	// moves to the queue for the application.
	k.Input(pushSeg(7, 0, 0, seg), IKCP_PACKET_REGULAR, false)
	checkHeld(t, k)
	if k.rcv_nxt != uint32(acked+1) {
		t.Fatalf("rcv_nxt %d, want %d", k.rcv_nxt, acked+1)
	}
	if k.RecvHeld() > 2*limit+bufClass(MaxSegmentData) {
		t.Fatalf("holds %d bytes", k.RecvHeld())
	}
	// Not read (paused): in-order data beyond the limit is refused too.
	for sn := k.rcv_nxt; sn < k.rcv_nxt+10; sn++ {
		k.Input(pushSeg(7, sn, 0, seg), IKCP_PACKET_REGULAR, false)
	}
	checkHeld(t, k)
	if k.RecvHeld() > 2*limit+bufClass(MaxSegmentData) {
		t.Fatalf("holds %d bytes while paused", k.RecvHeld())
	}
	// Reading reopens the window and tells the peer (WINS).
	k.Flush(IKCP_FLUSH_ACKONLY)
	out = nil
	if n := len(recvAll(k)); n == 0 {
		t.Fatal("nothing to read")
	}
	checkHeld(t, k)
	if k.RecvHeld() != 0 || k.wnd_unused() == 0 {
		t.Fatalf("after reading: holds %d, window %d", k.RecvHeld(), k.wnd_unused())
	}
	k.Flush(IKCP_FLUSH_ACKONLY)
	if len(out) != 1 || !hasCmd(out[0], IKCP_CMD_WINS) {
		t.Fatalf("no window update after the window reopened: %d packets", len(out))
	}
}

func hasCmd(p []byte, cmd byte) bool {
	for len(p) >= IKCP_OVERHEAD {
		if p[4] == cmd {
			return true
		}
		p = p[IKCP_OVERHEAD+int(binary.LittleEndian.Uint32(p[20:])):]
	}
	return false
}

// TestSmallSegmentsSmallBuffers: a small segment of a session with a large
// MTU holds a buffer of the smallest class.
func TestSmallSegmentsSmallBuffers(t *testing.T) {
	k := NewKCP(7, func([]byte, int) {})
	k.SetMtu(MaxMTU)
	k.WndSize(32, 32)
	k.Send(make([]byte, 64))
	k.Input(pushSeg(7, 0, 0, make([]byte, 64)), IKCP_PACKET_REGULAR, false)
	s, _ := k.snd_queue.Peek()
	r, _ := k.rcv_queue.Peek()
	if cap(s.data) != classes[0] || cap(r.data) != classes[0] {
		t.Fatalf("64-byte segments hold %d and %d bytes", cap(s.data), cap(r.data))
	}
	for n, want := range map[int]int{1: 1536, 1536: 1536, 1537: 4096, 9000: 16 << 10, MaxSegmentData: 16 << 10, MaxMTU: MaxMTU} {
		if b := getBuf(n); len(b) != n || cap(b) != want {
			t.Fatalf("getBuf(%d): len %d cap %d, want cap %d", n, len(b), cap(b), want)
		} else {
			putBuf(b)
		}
	}
}

// FuzzInput: whatever a peer sends, Input neither panics nor holds more
// than the receive limit allows, and its counters match its queues.
func FuzzInput(f *testing.F) {
	f.Add(pushSeg(7, 0, 0, []byte("abcd")), uint8(3))
	f.Add(pushSeg(7, 5, 0, make([]byte, 2000)), uint8(1))
	f.Add(append(pushSeg(7, 1, 0, []byte("x")), pushSeg(7, 0, 0, []byte("y"))...), uint8(0))
	big := pushSeg(7, 3, 0, nil)
	binary.LittleEndian.PutUint32(big[20:], MaxSegmentData+1)
	f.Add(big, uint8(2))
	f.Fuzz(func(t *testing.T, p []byte, reads uint8) {
		const limit = 8 << 10
		k := NewKCP(7, func([]byte, int) {})
		k.NoDelay(1, 10, 2, 1)
		k.WndSize(64, 64)
		k.SetMtu(MaxMTU)
		k.SetRecvLimit(limit)
		// The input is a series of packets, each cut where a 0xFE 0xFE
		// pair appears, with conv forced to the session's.
		for _, pkt := range bytes.Split(p, []byte{0xfe, 0xfe}) {
			if len(pkt) >= 4 {
				binary.LittleEndian.PutUint32(pkt, 7)
			}
			k.Input(pkt, IKCP_PACKET_REGULAR, reads&1 != 0)
			checkHeld(t, k)
			if k.RecvHeld() > 2*limit+bufClass(MaxSegmentData) {
				t.Fatalf("holds %d bytes, limit %d", k.RecvHeld(), limit)
			}
			if reads&2 != 0 {
				recvAll(k)
				checkHeld(t, k)
			}
			k.Flush(IKCP_FLUSH_FULL)
		}
		recvAll(k)
		checkHeld(t, k)
	})
}
