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

// maxRTOPerFlush bounds the segments one flush sends again because their
// retransmission timer expired (kcp-go: all of them). A timer that expired
// because the peer's process did not run, not because data was lost,
// then costs a few segments sent twice instead of the whole window; the
// rest follow at the next flushes (each acknowledgement of a resent
// segment triggers one), or by fast retransmission.
const maxRTOPerFlush = 8

// Flush sends what is due through the output callback: the acks owed,
// window probes, and with IKCP_FLUSH_FULL new segments the window admits
// and segments due for retransmission. Packets are at most the MTU; the
// buffer handed to output is borrowed for this call only. It returns the
// suggested interval (ms) until the next flush.
func (kcp *KCP) Flush(flushType FlushType) (nextUpdate uint32) {
	var seg segment
	seg.conv = kcp.conv
	seg.cmd = IKCP_CMD_ACK
	seg.una = kcp.reportedUna()
	seg.wnd = kcp.wndFor(seg.una)

	buffer := getBuf(int(kcp.mtu))
	ptr := buffer

	// makeSpace sends what the buffer holds if space more would not fit.
	makeSpace := func(space int) {
		size := len(buffer) - len(ptr)
		if size+space > int(kcp.mtu) {
			kcp.output(buffer, size)
			kcp.unaSent = seg.una
			ptr = buffer
		}
	}

	// Acknowledgements.
	if flushType == IKCP_FLUSH_ACKONLY || flushType == IKCP_FLUSH_FULL {
		for i, ack := range kcp.acklist {
			makeSpace(IKCP_OVERHEAD)
			// filter jitters caused by bufferbloat
			if _itimediff(ack.sn, seg.una) >= 0 || len(kcp.acklist)-1 == i {
				seg.sn, seg.ts = ack.sn, ack.ts
				ptr = seg.encode(ptr)
			}
		}
		kcp.acklist = kcp.acklist[0:0]
	}

	// Window probing while the peer's window is zero.
	if kcp.rmt_wnd == 0 {
		current := currentMs()
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
		makeSpace(IKCP_OVERHEAD)
		ptr = seg.encode(ptr)
	}
	if (kcp.probe & IKCP_ASK_TELL) != 0 {
		seg.cmd = IKCP_CMD_WINS
		makeSpace(IKCP_OVERHEAD)
		ptr = seg.encode(ptr)
	}
	kcp.probe = 0

	// New segments enter the window: min(snd_wnd, rmt_wnd, cwnd).
	cwnd := min(kcp.snd_wnd, kcp.rmt_wnd)
	if kcp.nocwnd == 0 {
		cwnd = min(kcp.cwnd, cwnd)
	}
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
	current := currentMs()
	var change, lostSegs uint64
	askUna := false
	nextUpdate = kcp.interval
	if flushType == IKCP_FLUSH_FULL {
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
			}
			if needsend {
				current = currentMs()
				segment.xmit++
				segment.ts = current
				segment.wnd = seg.wnd
				segment.una = seg.una
				makeSpace(IKCP_OVERHEAD + len(segment.data))
				ptr = segment.encode(ptr)
				copy(ptr, segment.data)
				ptr = ptr[len(segment.data):]
				if segment.xmit >= kcp.dead_link {
					kcp.state = 0xFFFFFFFF
				}
			}
			if rto := _itimediff(segment.resendts, current); rto > 0 && uint32(rto) < nextUpdate {
				nextUpdate = uint32(rto)
			}
		}
	}
	if askUna {
		seg.cmd, seg.sn, seg.ts = IKCP_CMD_WASK, 0, 0
		makeSpace(IKCP_OVERHEAD)
		ptr = seg.encode(ptr)
	}
	if len(ptr) == len(buffer) && kcp.unaCapped && seg.una != kcp.unaSent {
		// Nothing else carries the una a cap let move (CapUna): a
		// window update does.
		seg.cmd, seg.sn, seg.ts = IKCP_CMD_WINS, 0, 0
		ptr = seg.encode(ptr)
	}
	if size := len(buffer) - len(ptr); size > 0 {
		kcp.output(buffer, size)
		kcp.unaSent = seg.una
	}
	putBuf(buffer)

	// Congestion window after losses.
	if kcp.nocwnd == 0 {
		if change > 0 { // rate halving (RFC 6937)
			inflight := kcp.snd_nxt - kcp.snd_una
			kcp.ssthresh = max(inflight/2, IKCP_THRESH_MIN)
			kcp.cwnd = kcp.ssthresh + resent
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
	return nextUpdate
}
