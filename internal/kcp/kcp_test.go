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
	a, b       *KCP
	outA, outB *collector // what a and b flush
	toA, toB   [][]byte
	rng        *rand.Rand
	loss       float64 // drop probability per packet
	shuffle    bool    // deliver queued packets in random order
	maxPkt     int
}

var testNow uint32

func useTestClock(t *testing.T) {
	old := clock
	testNow = 1000 * ms
	clock = func() uint32 { return testNow }
	t.Cleanup(func() { clock = old })
}

// collector is the Packets of a test: it keeps a copy of every packet
// (or hands it to fn).
type collector struct {
	pkts [][]byte
	fn   func(p []byte)
	buf  []byte
}

func (c *collector) Buffer(n int) []byte {
	if cap(c.buf) < n {
		c.buf = make([]byte, 0, n)
	}
	return c.buf[:0]
}

func (c *collector) Send(p []byte) {
	if c.fn != nil {
		c.fn(p)
		return
	}
	c.pkts = append(c.pkts, bytes.Clone(p))
}

// discard is a Packets that drops what it is sent.
var discard = &collector{fn: func([]byte) {}}

func newLink(mtu int, loss float64, shuffle bool) *link {
	l := &link{rng: rand.New(rand.NewPCG(1, 2)), loss: loss, shuffle: shuffle}
	l.a, l.b = NewKCP(7), NewKCP(7)
	l.outA = &collector{fn: func(p []byte) { l.toB = l.send(l.toB, p) }}
	l.outB = &collector{fn: func(p []byte) { l.toA = l.send(l.toA, p) }}
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
			if _, err := d.to.Input(p); err != nil {
				t.Fatalf("Input: %v", err)
			}
		}
	}
	testNow += 5 * ms
	l.a.Flush(IKCP_FLUSH_FULL, l.outA)
	l.b.Flush(IKCP_FLUSH_FULL, l.outB)
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
	k := NewKCP(7)
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
	r := NewKCP(7)
	r.WndSize(32, 32)
	if _, err := r.Input(p); err != ErrLength {
		t.Fatalf("Input of an oversized segment: %v, want ErrLength", err)
	}
	if _, err := r.Input(pushSeg(7, 0, 0, make([]byte, MaxSegmentData))); err != nil {
		t.Fatalf("Input of a MaxSegmentData segment: %v", err)
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
	out := &collector{}
	k := NewKCP(7)
	k.WndSize(1024, 1024)
	k.SetMtu(MaxMTU)
	k.SetRecvLimit(limit)
	seg := make([]byte, MaxSegmentData)
	// Out of order (sn 1..): accepted up to the limit, then dropped
	// without an acknowledgement.
	for sn := uint32(1); sn < 20; sn++ {
		k.Input(pushSeg(7, sn, 0, seg))
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
	k.Input(pushSeg(7, 0, 0, seg))
	checkHeld(t, k)
	if k.rcv_nxt != uint32(acked+1) {
		t.Fatalf("rcv_nxt %d, want %d", k.rcv_nxt, acked+1)
	}
	if k.RecvHeld() > 2*limit+bufClass(MaxSegmentData) {
		t.Fatalf("holds %d bytes", k.RecvHeld())
	}
	// Not read (paused): in-order data beyond the limit is refused too.
	for sn := k.rcv_nxt; sn < k.rcv_nxt+10; sn++ {
		k.Input(pushSeg(7, sn, 0, seg))
	}
	checkHeld(t, k)
	if k.RecvHeld() > 2*limit+bufClass(MaxSegmentData) {
		t.Fatalf("holds %d bytes while paused", k.RecvHeld())
	}
	// Reading reopens the window and tells the peer (WINS).
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	out.pkts = nil
	if n := len(recvAll(k)); n == 0 {
		t.Fatal("nothing to read")
	}
	checkHeld(t, k)
	if k.RecvHeld() != 0 || k.wnd_unused() == 0 {
		t.Fatalf("after reading: holds %d, window %d", k.RecvHeld(), k.wnd_unused())
	}
	k.Flush(IKCP_FLUSH_ACKONLY, out)
	if len(out.pkts) != 1 || !hasCmd(out.pkts[0], IKCP_CMD_WINS) {
		t.Fatalf("no window update after the window reopened: %d packets", len(out.pkts))
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
	k := NewKCP(7)
	k.SetMtu(MaxMTU)
	k.WndSize(32, 32)
	k.Send(make([]byte, 64))
	k.Input(pushSeg(7, 0, 0, make([]byte, 64)))
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
		k := NewKCP(7)
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
			k.Input(pkt)
			checkHeld(t, k)
			if k.RecvHeld() > 2*limit+bufClass(MaxSegmentData) {
				t.Fatalf("holds %d bytes, limit %d", k.RecvHeld(), limit)
			}
			if reads&2 != 0 {
				recvAll(k)
				checkHeld(t, k)
			}
			k.Flush(IKCP_FLUSH_FULL, discard)
		}
		recvAll(k)
		checkHeld(t, k)
	})
}

// TestRTOBounded: when the retransmission timer of a whole window expires
// at once (the peer did not run, or everything was lost), one flush sends
// at most maxRTOPerFlush segments again; later flushes send the rest.
func TestRTOBounded(t *testing.T) {
	useTestClock(t)
	var sent int
	k := NewKCP(7)
	out := &collector{fn: func(p []byte) {
		for len(p) >= IKCP_OVERHEAD {
			if p[4] == IKCP_CMD_PUSH {
				sent++
			}
			p = p[IKCP_OVERHEAD+int(binary.LittleEndian.Uint32(p[20:])):]
		}
	}}
	k.NoDelay(1, 10, 2, 1)
	k.WndSize(128, 128)
	k.SetMtu(MaxMTU)
	for range 32 { // the peer's window before it advertised one
		k.Send(make([]byte, 1000))
	}
	k.Flush(IKCP_FLUSH_FULL, out)
	if sent != 32 {
		t.Fatalf("first flush sent %d segments, want 32", sent)
	}
	testNow += 10_000 * ms // every timer expired
	for i := 1; i <= 32/maxRTOPerFlush; i++ {
		sent = 0
		k.Flush(IKCP_FLUSH_FULL, out)
		if sent != maxRTOPerFlush {
			t.Fatalf("flush %d after the timeout sent %d segments again, want %d", i, sent, maxRTOPerFlush)
		}
	}
	sent = 0
	k.Flush(IKCP_FLUSH_FULL, out)
	if sent != 0 {
		t.Fatalf("%d segments sent a third time before their new timeout", sent)
	}
}
