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

import (
	"encoding/binary"
	"errors"
)

// shrink_buf advances snd_una to the oldest unacknowledged segment.
func (kcp *KCP) shrink_buf() {
	if seg, ok := kcp.snd_buf.Peek(); ok {
		kcp.snd_una = seg.sn
	} else {
		kcp.snd_una = kcp.snd_nxt
	}
}

// parse_ack marks the in-flight segment sn acknowledged; it leaves the ring
// when una passes it.
func (kcp *KCP) parse_ack(sn uint32) {
	if _itimediff(sn, kcp.snd_una) < 0 || _itimediff(sn, kcp.snd_nxt) >= 0 {
		return
	}
	for seg := range kcp.snd_buf.ForEach {
		if sn == seg.sn {
			if seg.acked == 0 {
				kcp.ackCount++
			}
			seg.acked = 1
			kcp.recycleSegment(seg)
			break
		}
		if _itimediff(sn, seg.sn) < 0 {
			break
		}
	}
}

// parse_fastack counts the acks that skip over earlier segments; it
// reports whether one of them reached the fast retransmit threshold.
func (kcp *KCP) parse_fastack(sn, ts uint32) bool {
	shouldFastAck := false
	if _itimediff(sn, kcp.snd_una) < 0 || _itimediff(sn, kcp.snd_nxt) >= 0 {
		return false
	}
	for seg := range kcp.snd_buf.ForEach {
		if _itimediff(sn, seg.sn) < 0 {
			break
		} else if sn != seg.sn && _itimediff(seg.ts, ts) <= 0 {
			if seg.fastack != 0xFFFFFFFF {
				seg.fastack++
				if seg.fastack >= uint32(kcp.fastresend) {
					shouldFastAck = true
				}
			}
		}
	}
	return shouldFastAck
}

// parse_una drops the segments before una (cumulatively acknowledged) and
// returns how many.
func (kcp *KCP) parse_una(una uint32) int {
	count := 0
	for seg := range kcp.snd_buf.ForEach {
		if _itimediff(una, seg.sn) > 0 {
			if seg.acked == 0 {
				kcp.ackCount++
			}
			kcp.recycleSegment(seg)
			count++
		} else {
			break
		}
	}
	kcp.snd_buf.Discard(count)
	return count
}

// room reports whether a new segment sn of n data bytes fits the receive
// limit. The next expected segment only needs room in the queue for the
// application, so out-of-order data can never block it.
func (kcp *KCP) room(sn uint32, n int) bool {
	if kcp.rcvLimit == 0 {
		return true
	}
	c := bufClass(n)
	if sn == kcp.rcv_nxt {
		return kcp.queueBytes == 0 || kcp.queueBytes+c <= kcp.rcvLimit
	}
	held := kcp.queueBytes + kcp.bufBytes
	return held == 0 || held+c <= kcp.rcvLimit
}

// parse_data stores a new segment (its data copied) in order or in the
// reorder heap; it reports whether it was a repeat.
func (kcp *KCP) parse_data(sn, ts uint32, frg uint8, data []byte) bool {
	if _itimediff(sn, kcp.rcv_nxt+kcp.rcv_wnd) >= 0 || _itimediff(sn, kcp.rcv_nxt) < 0 {
		return true
	}
	if sn == kcp.rcv_nxt && kcp.rcv_buf.Len() == 0 && kcp.rcv_queue.Len() < int(kcp.rcv_wnd) {
		// The common case: in order, nothing waiting before it.
		seg := segment{conv: kcp.conv, cmd: IKCP_CMD_PUSH, frg: frg, ts: ts, sn: sn, data: getBuf(len(data))}
		copy(seg.data, data)
		kcp.queueBytes += cap(seg.data)
		kcp.rcv_queue.Push(seg)
		kcp.rcv_nxt++
		return false
	}
	if kcp.rcv_buf.has(sn) {
		return true
	}
	seg := segment{conv: kcp.conv, cmd: IKCP_CMD_PUSH, frg: frg, ts: ts, sn: sn, data: getBuf(len(data))}
	copy(seg.data, data)
	kcp.bufBytes += cap(seg.data)
	kcp.rcv_buf.push(seg)
	kcp.moveReady()
	return false
}

// Errors Input returns for a packet it refuses (it then applies none of
// it).
var (
	ErrShort   = errors.New("kcp: packet shorter than a segment header")
	ErrConv    = errors.New("kcp: segment of another conversation")
	ErrLength  = errors.New("kcp: segment longer than its packet or MaxSegmentData")
	ErrCommand = errors.New("kcp: unknown segment command")
)

// Conv is the conversation id of the first segment of a packet.
func Conv(p []byte) (uint32, bool) {
	if len(p) < IKCP_OVERHEAD {
		return 0, false
	}
	return binary.LittleEndian.Uint32(p), true
}

// InputInfo is what Input learned from a packet.
type InputInfo struct {
	// Acked counts segments of ours the packet acknowledged for the first
	// time, one by one or cumulatively.
	Acked int
	// Needless counts segments of ours the packet showed were sent again
	// needlessly (the acknowledgement echoes an earlier transmission).
	Needless int
	// Window is the receive window the packet's last segment advertises
	// (0: the peer takes nothing more for now).
	Window uint16
	// OwesAcks: the packet held data or a window probe, which the next
	// flush answers (a pure acknowledgement owes nothing back).
	OwesAcks bool
	// Flush is what to flush now, if anything: IKCP_FLUSH_FULL when the
	// packet moved the window or showed a loss and data is due (new
	// segments the window now admits, or segments to send again),
	// IKCP_FLUSH_ACKONLY when a packet's worth of acknowledgements is owed
	// (ack clocking). Otherwise the acknowledgements owed may wait for
	// data going the same way to carry them.
	Flush FlushType
}

// checkPacket reports whether every segment of a packet is well formed:
// this conversation, a known command, a length within the packet and
// within MaxSegmentData. Trailing bytes shorter than a header are ignored.
func (kcp *KCP) checkPacket(data []byte) error {
	if len(data) < IKCP_OVERHEAD {
		return ErrShort
	}
	for len(data) >= IKCP_OVERHEAD {
		if binary.LittleEndian.Uint32(data) != kcp.conv {
			return ErrConv
		}
		switch data[4] {
		case IKCP_CMD_PUSH, IKCP_CMD_ACK, IKCP_CMD_WASK, IKCP_CMD_WINS:
		default:
			return ErrCommand
		}
		n := binary.LittleEndian.Uint32(data[20:])
		if n > MaxSegmentData || uint64(n) > uint64(len(data)-IKCP_OVERHEAD) {
			return ErrLength
		}
		data = data[IKCP_OVERHEAD+int(n):]
	}
	return nil
}

// Input processes one packet from the peer. A packet that is not well
// formed (see the errors above) changes nothing. Input sends nothing: the
// caller flushes as InputInfo.Flush says, and otherwise when it likes.
func (kcp *KCP) Input(data []byte) (InputInfo, error) {
	var info InputInfo
	if err := kcp.checkPacket(data); err != nil {
		return info, err
	}
	snd_una := kcp.snd_una
	acked := kcp.ackCount
	closed := kcp.sendRoom() == 0
	var latest uint32 // ts of the latest ack
	var updateRTT, fastAck bool
	for len(data) >= IKCP_OVERHEAD {
		_ = data[IKCP_OVERHEAD-1] // BCE hint
		cmd := data[4]
		frg := data[5]
		wnd := binary.LittleEndian.Uint16(data[6:])
		ts := binary.LittleEndian.Uint32(data[8:])
		sn := binary.LittleEndian.Uint32(data[12:])
		una := binary.LittleEndian.Uint32(data[16:])
		length := binary.LittleEndian.Uint32(data[20:])
		data = data[IKCP_OVERHEAD:]
		kcp.rmt_wnd = uint32(wnd)
		info.Window = wnd
		if cmd == IKCP_CMD_ACK && kcp.judgeResend(sn, ts) {
			info.Needless++
		}
		kcp.parse_una(una)
		kcp.shrink_buf()

		switch cmd {
		case IKCP_CMD_ACK:
			kcp.parse_ack(sn)
			fastAck = kcp.parse_fastack(sn, ts) || fastAck
			updateRTT = true
			latest = ts
		case IKCP_CMD_PUSH:
			info.OwesAcks = true
			if _itimediff(sn, kcp.rcv_nxt+kcp.rcv_wnd) < 0 {
				if _itimediff(sn, kcp.rcv_nxt) >= 0 && !kcp.rcv_buf.has(sn) && !kcp.room(sn, int(length)) {
					break // over the receive limit: unacknowledged, sent again later
				}
				kcp.ack_push(sn, ts)
				if _itimediff(sn, kcp.rcv_nxt) >= 0 {
					kcp.parse_data(sn, ts, frg, data[:length])
				}
			}
		case IKCP_CMD_WASK:
			info.OwesAcks = true
			kcp.probe |= IKCP_ASK_TELL // answer with our window
		case IKCP_CMD_WINS:
		}
		data = data[length:]
	}
	info.Acked = int(kcp.ackCount - acked)

	if updateRTT {
		current := clock()
		if _itimediff(current, latest) >= 0 {
			kcp.update_ack(_itimediff(current, latest))
		}
	}

	// Congestion window on new acknowledgements (Reno: slow start, then AIMD).
	if kcp.nocwnd == 0 && _itimediff(kcp.snd_una, snd_una) > 0 && kcp.cwnd < kcp.rmt_wnd {
		mss := kcp.mss
		if kcp.cwnd < kcp.ssthresh {
			kcp.cwnd++
			kcp.incr += mss
		} else {
			if kcp.incr < mss {
				kcp.incr = mss
			}
			kcp.incr += (mss*mss)/kcp.incr + (mss / 16)
			if (kcp.cwnd+1)*mss <= kcp.incr {
				kcp.cwnd = (kcp.incr + mss - 1) / mss
			}
		}
		if kcp.cwnd > kcp.rmt_wnd {
			kcp.cwnd = kcp.rmt_wnd
			kcp.incr = kcp.rmt_wnd * mss
		}
	}

	moved := _itimediff(kcp.snd_una, snd_una) > 0 || (closed && kcp.sendRoom() > 0)
	switch {
	case (moved || fastAck) && kcp.dataDue():
		info.Flush = IKCP_FLUSH_FULL
	case len(kcp.acklist) >= int(kcp.mtu/IKCP_OVERHEAD):
		info.Flush = IKCP_FLUSH_ACKONLY
	}
	return info, nil
}

func (kcp *KCP) ack_push(sn, ts uint32) {
	kcp.acklist = append(kcp.acklist, ackItem{sn, ts})
}
