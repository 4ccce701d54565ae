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

package kcp

import "time"

// maxRTOPerFlush bounds the segments one flush sends again because their
// retransmission timer expired (kcp-go: all of them). A timer that expired
// because the peer's process did not run, not because data was lost,
// then costs a few segments sent twice instead of the whole window; the
// rest follow at the next flushes (each acknowledgement of a resent
// segment triggers one), or by fast retransmission.
const maxRTOPerFlush = 8

// Packets is where Flush writes its packets: into buffers the caller
// provides, so that they go to the socket without another copy.
type Packets interface {
	// Buffer returns room for one packet: a slice of length 0 and
	// capacity at least n.
	Buffer(n int) []byte
	// Send takes back the last buffer, now holding the packet p.
	Send(p []byte)
}

// FlushInfo is what a Flush sent.
type FlushInfo struct {
	Packets int  // packets written
	Data    bool // a data segment went out (new or again)
	Resent  int  // data segments sent again (timer, fast or early retransmission)
	// Next is how long until the next retransmission timer is due, at
	// most the interval (NoDelay).
	Next time.Duration
}

// cwndNow is how many segments may be in flight: the send window, the
// peer's window and, with congestion control, the congestion window.
func (kcp *KCP) cwndNow() uint32 {
	cwnd := min(kcp.snd_wnd, kcp.rmt_wnd)
	if kcp.nocwnd == 0 {
		cwnd = min(kcp.cwnd, cwnd)
	}
	return cwnd
}

// sendRoom is how many more segments the window admits now.
func (kcp *KCP) sendRoom() int {
	return max(int(_itimediff(kcp.snd_una+kcp.cwndNow(), kcp.snd_nxt)), 0)
}

// dataDue reports whether a full flush now would send data: queued
// segments the window admits, or segments due to be sent (again).
func (kcp *KCP) dataDue() bool {
	if kcp.snd_queue.Len() > 0 && kcp.sendRoom() > 0 {
		return true
	}
	current := clock()
	for seg := range kcp.snd_buf.ForEach {
		if seg.acked == 0 && (seg.xmit == 0 || (seg.fastack > 0 && seg.fastack != 0xFFFFFFFF) ||
			_itimediff(current, seg.resendts) >= 0) {
			return true
		}
	}
	return false
}

// ResendDue reports whether a full flush now would send a segment again:
// its timer expired, a later one was acknowledged, or it is the tail and
// its probe is due.
func (kcp *KCP) ResendDue() bool {
	current := clock()
	var tail *segment
	for seg := range kcp.snd_buf.ForEach {
		if seg.acked == 1 || seg.xmit == 0 {
			continue
		}
		tail = seg
		if (seg.fastack > 0 && seg.fastack != 0xFFFFFFFF) || _itimediff(current, seg.resendts) >= 0 {
			return true
		}
	}
	pto := kcp.pto()
	return tail != nil && !tail.probed && pto < tail.rto && _itimediff(current, tail.ts+pto) >= 0
}

// Flush sends what is due into out: the acks owed, window probes, and
// with IKCP_FLUSH_FULL new segments the window admits and segments due
// for retransmission. Packets are at most the MTU.
func (kcp *KCP) Flush(flushType FlushType, out Packets) (info FlushInfo) {
	var seg segment
	seg.conv = kcp.conv
	seg.cmd = IKCP_CMD_ACK
	seg.una = kcp.reportedUna()
	seg.wnd = kcp.wndFor(seg.una)

	mtu := int(kcp.mtu)
	var buf []byte // the packet being filled; nil until its first segment
	// put returns room for n more bytes, sending the packet first if they
	// would not fit.
	put := func(n int) []byte {
		if buf != nil && len(buf)+n > mtu {
			out.Send(buf)
			info.Packets++
			kcp.unaSent = seg.una
			buf = nil
		}
		if buf == nil {
			buf = out.Buffer(mtu)[:0]
		}
		buf = buf[:len(buf)+n]
		return buf[len(buf)-n:]
	}

	// Acknowledgements.
	for i, ack := range kcp.acklist {
		// filter jitters caused by bufferbloat
		if _itimediff(ack.sn, seg.una) >= 0 || len(kcp.acklist)-1 == i {
			seg.sn, seg.ts = ack.sn, ack.ts
			seg.encode(put(IKCP_OVERHEAD))
		}
	}
	kcp.acklist = kcp.acklist[0:0]

	// Window probing while the peer's window is zero.
	if kcp.rmt_wnd == 0 {
		current := clock()
		if kcp.probe_wait == 0 {
			kcp.probe_wait = IKCP_PROBE_INIT
			kcp.ts_probe = current + kcp.probe_wait
		} else if _itimediff(current, kcp.ts_probe) >= 0 {
			if kcp.probe_wait < IKCP_PROBE_INIT {
				kcp.probe_wait = IKCP_PROBE_INIT
			}
			kcp.probe_wait += kcp.probe_wait / 2
			if kcp.probe_wait > IKCP_PROBE_LIMIT {
				kcp.probe_wait = IKCP_PROBE_LIMIT
			}
			kcp.ts_probe = current + kcp.probe_wait
			kcp.probe |= IKCP_ASK_SEND
		}
	} else {
		kcp.ts_probe = 0
		kcp.probe_wait = 0
	}
	if (kcp.probe & IKCP_ASK_SEND) != 0 {
		seg.cmd = IKCP_CMD_WASK
		seg.encode(put(IKCP_OVERHEAD))
	}
	if (kcp.probe & IKCP_ASK_TELL) != 0 {
		seg.cmd = IKCP_CMD_WINS
		seg.encode(put(IKCP_OVERHEAD))
	}
	kcp.probe = 0

	cwnd := kcp.cwndNow()
	next := kcp.interval
	var change, lostSegs uint64
	askUna := false
	if flushType == IKCP_FLUSH_FULL {
		// New segments enter the window.
		newSegsCount := 0
		for _itimediff(kcp.snd_nxt, kcp.snd_una+cwnd) < 0 {
			newseg, ok := kcp.snd_queue.Pop()
			if !ok {
				break
			}
			newseg.conv = kcp.conv
			newseg.cmd = IKCP_CMD_PUSH
			newseg.sn = kcp.snd_nxt
			kcp.snd_buf.Push(newseg)
			kcp.snd_nxt++
			newSegsCount++
		}

		resent := uint32(kcp.fastresend)
		if kcp.fastresend <= 0 {
			resent = 0xffffffff
		}

		// (Re)transmissions: first sends, fast and early retransmits, RTOs.
		current := clock()
		var tail *segment // the last segment in flight not acknowledged
		for segment := range kcp.snd_buf.ForEach {
			needsend := false
			if segment.acked == 1 {
				if segment.sn == kcp.snd_una && _itimediff(current, segment.resendts) >= 0 {
					// Acknowledged one by one, but the una that
					// releases it has not come for an RTO (lost, or
					// held back by the peer, CapUna): ask for it.
					askUna = true
					segment.rto += kcp.rx_rto / 2
					segment.resendts = current + segment.rto
				}
				continue
			}
			tail = segment
			byTimer := false
			if segment.xmit == 0 { // initial transmit
				needsend = true
				segment.rto = kcp.rx_rto
				segment.resendts = current + segment.rto
			} else if segment.fastack >= resent && segment.fastack != 0xFFFFFFFF { // fast retransmit
				needsend = true
				segment.fastack = 0xFFFFFFFF // must wait until RTO to reset
				segment.rto = kcp.rx_rto
				segment.resendts = current + segment.rto
				change++
			} else if segment.fastack > 0 && segment.fastack != 0xFFFFFFFF && newSegsCount == 0 { // early retransmit
				needsend = true
				segment.fastack = 0xFFFFFFFF
				segment.rto = kcp.rx_rto
				segment.resendts = current + segment.rto
				change++
			} else if _itimediff(current, segment.resendts) >= 0 && lostSegs < maxRTOPerFlush { // RTO
				needsend = true
				if kcp.nodelay == 0 {
					segment.rto += kcp.rx_rto
				} else {
					segment.rto += kcp.rx_rto / 2
				}
				segment.fastack = 0
				segment.resendts = current + segment.rto
				lostSegs++
				byTimer = true
			}
			if needsend {
				segment.probed, segment.byTimer = false, byTimer
				kcp.transmit(segment, &seg, put, &info)
				current = segment.ts
			}
			if rto := _itimediff(segment.resendts, current); rto > 0 && uint32(rto) < next {
				next = uint32(rto)
			}
		}
		// Tail-loss probe (rto.go): the last segment in flight, quiet
		// for a probe timeout that comes before its RTO.
		if pto := kcp.pto(); tail != nil && !info.Data && !tail.probed && pto < tail.rto {
			if wait := _itimediff(tail.ts+pto, current); wait <= 0 {
				tail.probed, tail.byTimer = true, true
				kcp.transmit(tail, &seg, put, &info)
			} else if uint32(wait) < next {
				next = uint32(wait)
			}
		}
	}
	if askUna {
		seg.cmd, seg.sn, seg.ts = IKCP_CMD_WASK, 0, 0
		seg.encode(put(IKCP_OVERHEAD))
	}
	if buf == nil && kcp.unaCapped && seg.una != kcp.unaSent {
		// Nothing else carries the una a cap let move (CapUna): a
		// window update does.
		seg.cmd, seg.sn, seg.ts = IKCP_CMD_WINS, 0, 0
		seg.encode(put(IKCP_OVERHEAD))
	}
	if buf != nil {
		out.Send(buf)
		info.Packets++
		kcp.unaSent = seg.una
	}
	info.Next = time.Duration(next) * time.Microsecond

	// Congestion window after losses.
	if kcp.nocwnd == 0 {
		if change > 0 { // rate halving (RFC 6937)
			inflight := kcp.snd_nxt - kcp.snd_una
			kcp.ssthresh = max(inflight/2, IKCP_THRESH_MIN)
			kcp.cwnd = kcp.ssthresh + uint32(kcp.fastresend)
			kcp.incr = kcp.cwnd * kcp.mss
		}
		if lostSegs > 0 { // RTO (RFC 5681)
			kcp.ssthresh = max(cwnd/2, IKCP_THRESH_MIN)
			kcp.cwnd = 1
			kcp.incr = kcp.mss
		}
		if kcp.cwnd < 1 {
			kcp.cwnd = 1
			kcp.incr = kcp.mss
		}
	}
	return info
}

// transmit writes segment (again) with the window and una of this flush.
func (kcp *KCP) transmit(segment, flush *segment, put func(int) []byte, info *FlushInfo) {
	if segment.xmit > 0 {
		info.Resent++
	}
	info.Data = true
	segment.xmit++
	segment.ts = clock()
	segment.wnd = flush.wnd
	segment.una = flush.una
	p := put(IKCP_OVERHEAD + len(segment.data))
	copy(segment.encode(p), segment.data)
}
