// The MIT License (MIT)
//
// Copyright (c) 2015 xtaci
//
// Permission is hereby granted, free of charge, to any person obtaining a copy
// of this software and associated documentation files (the "Software"), to deal
// in the Software without restriction, including without limitation the rights
// to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
// copies of the Software, and to permit persons to whom the Software is
// furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in all
// copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
// IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
// OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
// SOFTWARE.

// Package kcp is the KCP state machine of github.com/xtaci/kcp-go/v5
// (v5.6.72, kcp.go and ringbuffer.go), forked for rudp under the MIT
// license (see LICENSE in this directory). It keeps kcp-go's wire format,
// its window logic and the names rudp uses; it is the only code of the
// project that parses or writes KCP segments. It differs in what rudp
// needs:
//
//   - Input checks a whole packet before it applies any of it, never
//     panics on any input, and returns what the caller needs to know
//     (segments newly acknowledged, the peer's window, whether acks are
//     owed, what to flush): it never flushes by itself, so the caller
//     decides whether acknowledgements wait for data to carry them;
//   - Flush writes packets into buffers the caller provides (Packets: no
//     copy between KCP and the socket) and reports what it sent (data or
//     not, retransmissions, when its timers are next due);
//   - segments may carry up to MaxSegmentData bytes (kcp-go: about 1,500)
//     and packets up to MaxMTU, so a path with a large MTU carries a 64 KiB
//     message in 5 segments instead of 48; segment buffers come from pools
//     in a few size classes, so a small segment holds a small buffer;
//   - the receive side can be bounded in bytes (SetRecvLimit): the window
//     it advertises shrinks with the bytes it holds, and data beyond the
//     bound is dropped unacknowledged, so a session holds at most about
//     twice the limit whatever the peer sends;
//   - received data is handed out without copying (RecvFunc, or Take and
//     Release, which give the segment buffers to the caller for a while);
//   - the una a flush reports can be capped (CapUna), so that the
//     receiver acknowledges data cumulatively only once it delivered it; the
//     window is then advertised from that una, and a sender whose segments
//     were all acknowledged one by one asks for the una that does not come;
//   - one flush resends at most maxRTOPerFlush segments whose timer
//     expired (kcp-go: all of them), so a peer that did not run for a
//     while costs a few duplicate segments, not a window of them;
//   - in-order segments skip the reorder heap, which is typed (no boxing);
//   - no stream mode, no FEC, no dead-link state, no logging, no global
//     counters, no Update/Check (rudp runs its own timer).
package kcp

import (
	"encoding/binary"
	"time"
)

// ms is a millisecond in KCP's clock, which counts microseconds (clock).
const ms = 1000

// KCP protocol constants (as in kcp-go; times in the clock's µs).
const (
	IKCP_RTO_NDL = 30 * ms    // no-delay mode: minimum RTO
	IKCP_RTO_MIN = 100 * ms   // normal mode: minimum RTO
	IKCP_RTO_DEF = 200 * ms   // default RTO
	IKCP_RTO_MAX = 60000 * ms // maximum RTO

	IKCP_CMD_PUSH = 81 // cmd: push data
	IKCP_CMD_ACK  = 82 // cmd: acknowledge
	IKCP_CMD_WASK = 83 // cmd: window probe request (ask)
	IKCP_CMD_WINS = 84 // cmd: window size response (tell)

	IKCP_ASK_SEND = 1 // schedule sending IKCP_CMD_WASK
	IKCP_ASK_TELL = 2 // schedule sending IKCP_CMD_WINS

	IKCP_WND_SND = 32   // default send window (segments)
	IKCP_WND_RCV = 32   // default receive window (segments)
	IKCP_MTU_DEF = 1400 // default MTU (bytes)

	IKCP_INTERVAL    = 100 * ms    // default flush interval
	IKCP_OVERHEAD    = 24          // segment header: conv(4) cmd(1) frg(1) wnd(2) ts(4) sn(4) una(4) len(4)
	IKCP_THRESH_INIT = 2           // initial slow-start threshold (segments)
	IKCP_THRESH_MIN  = 2           // minimum slow-start threshold (segments)
	IKCP_PROBE_INIT  = 500 * ms    // initial window probe timeout
	IKCP_PROBE_LIMIT = 120000 * ms // maximum window probe timeout

	// MaxMTU is the largest packet SetMtu accepts; a packet carries as
	// many segments as fit.
	MaxMTU = 64 << 10
	// MaxSegmentData is the most data one segment may carry, sent or
	// received; Input rejects a packet with a longer segment.
	MaxSegmentData = 16<<10 - IKCP_OVERHEAD
)

// FlushType selects what Flush sends: acknowledgements only, or also data.
type FlushType int8

const (
	IKCP_FLUSH_ACKONLY FlushType = 1 << iota
	IKCP_FLUSH_FULL
)

var refTime = time.Now()

// clock is the monotonic clock of KCP's timestamps and timers, in µs (a
// variable so that tests can drive time). It wraps every 71 minutes;
// timestamps are compared by difference, so nothing in flight that long
// is mistaken. A timestamp only ever goes back to its sender (the peer
// echoes it in the acknowledgement), so the unit is this side's choice:
// kcp-go counts ms, and the two interoperate; µs give round-trip samples
// of sub-millisecond paths, and the RTO that follows them.
var clock = func() uint32 { return uint32(time.Since(refTime) / time.Microsecond) }

func _itimediff(later, earlier uint32) int32 {
	return (int32)(later - earlier)
}

// segment is one KCP segment.
type segment struct {
	conv     uint32
	cmd      uint8
	frg      uint8
	wnd      uint16
	ts       uint32
	sn       uint32
	una      uint32
	rto      uint32
	xmit     uint32
	resendts uint32
	fastack  uint32
	acked    uint32 // selectively acknowledged (data already recycled)
	probed   bool   // a tail-loss probe went out since its last transmission
	byTimer  bool   // its last transmission was a timer's (RTO or probe), not a first or fast one
	data     []byte
}

// encode writes the segment header into ptr and returns the rest of ptr.
func (seg *segment) encode(ptr []byte) []byte {
	_ = ptr[IKCP_OVERHEAD-1] // BCE hint
	binary.LittleEndian.PutUint32(ptr, seg.conv)
	ptr[4] = seg.cmd
	ptr[5] = seg.frg
	binary.LittleEndian.PutUint16(ptr[6:], seg.wnd)
	binary.LittleEndian.PutUint32(ptr[8:], seg.ts)
	binary.LittleEndian.PutUint32(ptr[12:], seg.sn)
	binary.LittleEndian.PutUint32(ptr[16:], seg.una)
	binary.LittleEndian.PutUint32(ptr[20:], uint32(len(seg.data)))
	return ptr[IKCP_OVERHEAD:]
}

// KCP is one KCP connection's state machine: pure ARQ, no I/O, not safe
// for concurrent use.
type KCP struct {
	conv uint32 // conversation id, equal on both sides
	mtu  uint32 // largest packet output (bytes)
	mss  uint32 // largest segment data = mtu - IKCP_OVERHEAD

	snd_una uint32 // oldest unacknowledged sequence number
	snd_nxt uint32 // next sequence number to send
	rcv_nxt uint32 // next sequence number expected

	ssthresh           uint32
	rx_rttvar, rx_srtt int32
	rx_rto, rx_minrto  uint32 // the RTO, and its floor (see rto.go)
	rtoFloorLo         uint32 // the floor's range: it adapts between these
	rtoFloorHi         uint32
	needless           uint64 // retransmissions found needless (Needless)
	snd_wnd            uint32 // local send window (segments)
	rcv_wnd            uint32 // local receive window (segments)
	rmt_wnd            uint32 // the peer's advertised window (segments)
	cwnd               uint32
	incr               uint32

	probe      uint32
	ts_probe   uint32
	probe_wait uint32

	interval uint32
	nodelay  uint32

	fastresend int32
	nocwnd     int32

	// Receive bound (SetRecvLimit): buffer bytes (capacities) held in
	// rcv_queue and rcv_buf.
	rcvLimit, queueBytes, bufBytes int

	snd_queue *RingBuffer[segment] // waiting to enter the send window
	rcv_queue *RingBuffer[segment] // in order, ready for Recv
	snd_buf   *RingBuffer[segment] // in flight
	rcv_buf   segmentHeap          // out of order

	acklist []ackItem

	ackCount uint64 // segments of ours acknowledged so far (Acked)

	unaCapped bool   // flushes report una at most unaCap (CapUna)
	unaCap    uint32 // moves forward only
	unaSent   uint32 // the una of the last packet output
}

type ackItem struct {
	sn uint32
	ts uint32
}

// NewKCP creates a state machine; conv must be equal on both peers.
func NewKCP(conv uint32) *KCP {
	kcp := new(KCP)
	kcp.conv = conv
	kcp.snd_wnd = IKCP_WND_SND
	kcp.rcv_wnd = IKCP_WND_RCV
	kcp.rmt_wnd = IKCP_WND_RCV
	kcp.mtu = IKCP_MTU_DEF
	kcp.mss = kcp.mtu - IKCP_OVERHEAD
	kcp.rx_rto = IKCP_RTO_DEF
	kcp.rx_minrto, kcp.rtoFloorLo, kcp.rtoFloorHi = IKCP_RTO_MIN, IKCP_RTO_MIN, IKCP_RTO_MIN
	kcp.interval = IKCP_INTERVAL
	kcp.ssthresh = IKCP_THRESH_INIT
	// The rings start small and grow with use: an idle session stays cheap.
	kcp.snd_buf = NewRingBuffer[segment](RINGBUFFER_MIN)
	kcp.rcv_queue = NewRingBuffer[segment](RINGBUFFER_MIN)
	kcp.snd_queue = NewRingBuffer[segment](RINGBUFFER_MIN)
	return kcp
}

func (kcp *KCP) recycleSegment(seg *segment) {
	if seg.data != nil {
		putBuf(seg.data)
		seg.data = nil
	}
}

// PeekSize is the size of the next whole message in the receive queue, or
// -1 if there is none.
func (kcp *KCP) PeekSize() (length int) {
	seg, ok := kcp.rcv_queue.Peek()
	if !ok {
		return -1
	}
	if seg.frg == 0 {
		return len(seg.data)
	}
	if kcp.rcv_queue.Len() < int(seg.frg+1) {
		return -1
	}
	for seg := range kcp.rcv_queue.ForEach {
		length += len(seg.data)
		if seg.frg == 0 {
			break
		}
	}
	return
}

// RecvFunc hands the next whole message to fn, one segment's data at a
// time and without copying (the slices are valid only during fn). It
// reports whether there was a message.
func (kcp *KCP) RecvFunc(fn func([]byte)) bool {
	if kcp.PeekSize() < 0 {
		return false
	}
	closed := kcp.wnd_unused() == 0
	for {
		seg, ok := kcp.rcv_queue.Pop()
		if !ok {
			break
		}
		fn(seg.data)
		kcp.queueBytes -= cap(seg.data)
		kcp.recycleSegment(&seg)
		if seg.frg == 0 {
			break
		}
	}
	kcp.afterRecv(closed)
	return true
}

// Take moves the data of whole messages out of the receive queue, in
// order, appending one slice per segment to dst, until at least max bytes
// are taken or no whole message is left; it returns dst and the bytes
// taken. The slices are the caller's until it hands them back with
// Release; the receive limit no longer counts them, so the caller bounds
// what it takes (a deliverer takes a bounded chunk, decodes it without the
// session's lock, and releases it before it takes more).
func (kcp *KCP) Take(dst [][]byte, max int) ([][]byte, int) {
	closed := kcp.wnd_unused() == 0
	n := 0
	for n < max && kcp.PeekSize() >= 0 {
		for {
			seg, ok := kcp.rcv_queue.Pop()
			if !ok {
				break
			}
			kcp.queueBytes -= cap(seg.data)
			dst = append(dst, seg.data)
			n += len(seg.data)
			if seg.frg == 0 {
				break
			}
		}
	}
	if n > 0 {
		kcp.afterRecv(closed)
	}
	return dst, n
}

// Release hands back the buffers Take handed out and clears bufs.
func Release(bufs [][]byte) {
	for i, b := range bufs {
		putBuf(b)
		bufs[i] = nil
	}
}

// afterRecv moves what is now in order into the receive queue and, if the
// advertised window was closed before and is open now, has the next flush
// tell the peer.
func (kcp *KCP) afterRecv(wasClosed bool) {
	kcp.moveReady()
	if wasClosed && kcp.wnd_unused() > 0 {
		kcp.probe |= IKCP_ASK_TELL // tell the peer the window reopened
	}
}

// CapUna caps the una that flushes report (the next sequence number
// expected, which acknowledges every segment before it) at u, or later:
// the cap only moves forward. Segments past the cap are still
// acknowledged one by one, so the peer does not send them again, but
// its send window does not move past them.
func (kcp *KCP) CapUna(u uint32) {
	if !kcp.unaCapped || _itimediff(u, kcp.unaCap) > 0 {
		kcp.unaCapped, kcp.unaCap = true, u
	}
}

// Acked counts the segments of ours the peer acknowledged so far, one by
// one or cumulatively, each once: it grows whenever the peer takes new
// data, even while its una stays where it was (CapUna).
func (kcp *KCP) Acked() uint64 { return kcp.ackCount }

// RcvNxt is the sequence number of the next segment expected in order.
func (kcp *KCP) RcvNxt() uint32 { return kcp.rcv_nxt }

// Pulled is the sequence number of the next segment RecvFunc hands out
// (the segments before it were handed out).
func (kcp *KCP) Pulled() uint32 { return kcp.rcv_nxt - uint32(kcp.rcv_queue.Len()) }

// reportedUna is the una a flush reports (see CapUna).
func (kcp *KCP) reportedUna() uint32 {
	if kcp.unaCapped && _itimediff(kcp.unaCap, kcp.rcv_nxt) < 0 {
		return kcp.unaCap
	}
	return kcp.rcv_nxt
}

// moveReady moves the segments that are now in order from rcv_buf to
// rcv_queue, while the queue has room.
func (kcp *KCP) moveReady() {
	for kcp.rcv_buf.Len() > 0 {
		seg := kcp.rcv_buf.top()
		if seg.sn != kcp.rcv_nxt || kcp.rcv_queue.Len() >= int(kcp.rcv_wnd) {
			return
		}
		s := kcp.rcv_buf.pop()
		n := cap(s.data)
		kcp.bufBytes -= n
		kcp.queueBytes += n
		kcp.rcv_queue.Push(s)
		kcp.rcv_nxt++
	}
}

// Send queues buffer as one message (copied); it returns -1 for an empty
// buffer and -2 for one of more than 255 segments.
func (kcp *KCP) Send(buffer []byte) int {
	if len(buffer) == 0 {
		return -1
	}
	count := (len(buffer) + int(kcp.mss) - 1) / int(kcp.mss)
	if count > 255 {
		return -2
	}
	for i := range count {
		size := min(len(buffer), int(kcp.mss))
		seg := segment{data: getBuf(size)}
		copy(seg.data, buffer[:size])
		seg.frg = uint8(count - i - 1)
		kcp.snd_queue.Push(seg)
		buffer = buffer[size:]
	}
	return 0
}

// wnd_unused is the receive window advertised to the peer: free slots of
// the receive queue, and with a receive limit no more segments of this
// session's size than the bytes left under it.
func (kcp *KCP) wnd_unused() uint16 {
	free := int(kcp.rcv_wnd) - kcp.rcv_queue.Len()
	if kcp.rcvLimit > 0 {
		free = min(free, (kcp.rcvLimit-kcp.queueBytes-kcp.bufBytes)/int(kcp.mss))
	}
	if free <= 0 {
		return 0
	}
	return uint16(min(free, 0xffff))
}

// wndFor is the window a packet that reports una advertises. The peer
// counts its window from the una it sees, and a capped una (CapUna) lags
// rcv_nxt by segments this side holds already: the room left is
// advertised on top of them. A side with no room left advertises 0, so
// the peer knows it is full and probes.
func (kcp *KCP) wndFor(una uint32) uint16 {
	free := kcp.wnd_unused()
	if free == 0 {
		return 0
	}
	return uint16(min(int(free)+int(kcp.rcv_nxt-una), 0xffff))
}

// SetRecvLimit bounds the receive side: bytes (of segment buffers) held
// for the application and out of order. The advertised window shrinks as
// they grow; an out-of-order segment that would pass the limit, or an
// in-order one while the queue for the application alone is at it, is
// dropped unacknowledged (the peer sends it again). 0: no limit.
func (kcp *KCP) SetRecvLimit(bytes int) {
	kcp.rcvLimit = max(bytes, 0)
}

// SetMtu sets the largest packet size, at most MaxMTU (segments carry at
// most MaxSegmentData of it): SetSizes(mtu, MaxSegmentData).
func (kcp *KCP) SetMtu(mtu int) int { return kcp.SetSizes(mtu, MaxSegmentData) }

// SetSizes sets the largest packet size, at most MaxMTU, and the most data
// a new segment carries: the packet's room, at most maxSeg and
// MaxSegmentData. The packet size may shrink only while nothing is queued
// (queued segments must still fit); it returns -1 then, or for a size out
// of range.
func (kcp *KCP) SetSizes(mtu, maxSeg int) int {
	if mtu <= IKCP_OVERHEAD || mtu > MaxMTU || maxSeg <= 0 || (uint32(mtu) < kcp.mtu && kcp.WaitSnd() > 0) {
		return -1
	}
	kcp.mtu = uint32(mtu)
	kcp.mss = min(kcp.mtu-IKCP_OVERHEAD, uint32(min(maxSeg, MaxSegmentData)))
	return 0
}

// Mss is the most data one outgoing segment carries.
func (kcp *KCP) Mss() int { return int(kcp.mss) }

// NoDelay sets the options as in kcp-go: nodelay (0/1, 1 lowers the
// minimum RTO), interval (ms, 10..5000), resend (fast retransmit after that
// many skipping acks, 0 off), nc (1 disables congestion control). A
// negative value leaves that option unchanged.
func (kcp *KCP) NoDelay(nodelay, interval, resend, nc int) int {
	if nodelay >= 0 {
		kcp.nodelay = uint32(nodelay)
		if nodelay != 0 {
			kcp.rx_minrto = IKCP_RTO_NDL
		} else {
			kcp.rx_minrto = IKCP_RTO_MIN
		}
		kcp.rtoFloorLo, kcp.rtoFloorHi = kcp.rx_minrto, kcp.rx_minrto
	}
	if interval >= 0 {
		kcp.interval = uint32(min(max(interval, 10), 5000)) * ms
	}
	if resend >= 0 {
		kcp.fastresend = int32(resend)
	}
	if nc >= 0 {
		kcp.nocwnd = int32(nc)
	}
	return 0
}

// WndSize sets the send and receive windows in segments (0 keeps one).
func (kcp *KCP) WndSize(sndwnd, rcvwnd int) int {
	if sndwnd > 0 {
		kcp.snd_wnd = uint32(sndwnd)
	}
	if rcvwnd > 0 {
		kcp.rcv_wnd = uint32(rcvwnd)
	}
	return 0
}

// WaitSnd is how many segments are queued or in flight.
func (kcp *KCP) WaitSnd() int {
	return kcp.snd_buf.Len() + kcp.snd_queue.Len()
}

// RecvHeld is the bytes of segment buffers the receive side holds (what
// SetRecvLimit bounds).
func (kcp *KCP) RecvHeld() int { return kcp.queueBytes + kcp.bufBytes }

// SendWindow is how many segments may be in flight now: the smaller of
// the send window and the peer's advertised window (and the congestion
// window, when congestion control is on).
func (kcp *KCP) SendWindow() int {
	w := min(kcp.snd_wnd, kcp.rmt_wnd)
	if kcp.nocwnd == 0 {
		w = min(w, kcp.cwnd)
	}
	return int(w)
}

// Head reports the oldest segment of ours in flight that the peer has not
// acknowledged yet (neither cumulatively nor one by one), and how often it
// was sent; ok is false when there is none.
func (kcp *KCP) Head() (sn, sent uint32, ok bool) {
	for seg := range kcp.snd_buf.ForEach {
		if seg.acked == 0 {
			sn, sent, ok = seg.sn, seg.xmit, true
			return
		}
	}
	return
}
