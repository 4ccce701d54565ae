package kcp

import (
	"time"
)

// Retransmission timers.
//
// The RTO comes from the measured round trip (RFC 6298: srtt + 4 rttvar,
// at least rtoGranularity above srtt) with a floor. Like kcp-go the floor
// is fixed by default (NoDelay); SetRTOFloor lets it adapt to what the
// retransmissions it causes turn out to be. When an acknowledgement shows
// that a segment a timer sent again had arrived the first time (the
// timestamp it echoes is the earlier transmission's: a needless
// retransmission, as when the peer's process did not run for a while),
// the floor doubles, and covers at least the round trip that transmission
// took. When it shows that the last transmission was the one that arrived
// (the one before was lost), the floor halves. Fast retransmissions do not
// move it (they do not depend on it, and on a clean path that is overrun,
// where datagrams are dropped at the receiver's socket, they would bring
// it down for nothing). It starts at the top: a clean path,
// where timers expire only when a process stalls, keeps kcp-go's
// conservative floor and retransmits no more than kcp-go did; a lossy one
// brings it down within a few losses, and then a loss costs little more
// than a round trip.
//
// The last segment in flight also gets a tail-loss probe: once it has
// gone unacknowledged for a probe timeout (2 srtt + rtoGranularity, at
// least the floor) that comes before its RTO, it is sent once more,
// without backing off its timer. A lost segment with nothing sent after
// it (the last of a message, or a lone request) draws no acknowledgement
// that would reveal the gap, so without the probe only its RTO would
// recover it.

// rtoGranularity is the least margin the RTO and the probe timeout keep
// above the round trip: about what a timer may fire late by.
const rtoGranularity = 1 * ms

// SetRTOFloor makes the RTO floor adapt between lo and hi, starting at
// hi (see above); lo == hi fixes it.
func (kcp *KCP) SetRTOFloor(lo, hi time.Duration) {
	l := uint32(max(lo/time.Microsecond, 1))
	h := max(uint32(min(hi/time.Microsecond, IKCP_RTO_MAX)), l)
	kcp.rx_minrto, kcp.rtoFloorLo, kcp.rtoFloorHi = h, l, h
	kcp.rx_rto = kcp.rtoNow()
}

// RTO is the current retransmission timeout.
func (kcp *KCP) RTO() time.Duration { return time.Duration(kcp.rx_rto) * time.Microsecond }

// SRTT is the smoothed round-trip time (0 before the first acknowledgement).
func (kcp *KCP) SRTT() time.Duration { return time.Duration(kcp.rx_srtt) * time.Microsecond }

// Needless counts the retransmissions an acknowledgement showed needless
// (the earlier transmission had arrived).
func (kcp *KCP) Needless() uint64 { return kcp.needless }

// rtoNow computes the RTO from the round-trip estimates and the floor.
func (kcp *KCP) rtoNow() uint32 {
	if kcp.rx_srtt == 0 && kcp.rx_rttvar == 0 {
		return min(max(kcp.rx_minrto, kcp.rx_rto), IKCP_RTO_MAX) // no sample yet
	}
	rto := uint32(kcp.rx_srtt) + max(rtoGranularity, uint32(kcp.rx_rttvar)<<2)
	return min(max(kcp.rx_minrto, rto), IKCP_RTO_MAX)
}

// update_ack updates the smoothed RTT and RTO with a sample (RFC 6298).
func (kcp *KCP) update_ack(rtt int32) {
	if kcp.rx_srtt == 0 {
		kcp.rx_srtt = max(rtt, 1)
		kcp.rx_rttvar = rtt >> 1
	} else {
		delta := rtt - kcp.rx_srtt
		kcp.rx_srtt += delta >> 3
		kcp.rx_srtt = max(kcp.rx_srtt, 1)
		if delta < 0 {
			delta = -delta
		}
		if rtt < kcp.rx_srtt-kcp.rx_rttvar {
			// a sample below the expected range weighs 8x less
			kcp.rx_rttvar += (delta - kcp.rx_rttvar) >> 5
		} else {
			kcp.rx_rttvar += (delta - kcp.rx_rttvar) >> 2
		}
	}
	kcp.rx_rto = kcp.rtoNow()
}

// judgeResend looks at the acknowledgement of segment sn, which echoes
// the timestamp ts of the transmission that arrived. For a segment a
// timer sent again it moves the floor: up when an earlier transmission
// had arrived (the last one was needless), down when the last one did (a
// fast retransmission says nothing about the timers). It reports whether
// the retransmission was needless.
func (kcp *KCP) judgeResend(sn, ts uint32) bool {
	if _itimediff(sn, kcp.snd_una) < 0 || _itimediff(sn, kcp.snd_nxt) >= 0 {
		return false
	}
	for seg := range kcp.snd_buf.ForEach {
		if _itimediff(sn, seg.sn) < 0 {
			break
		}
		if seg.sn != sn {
			continue
		}
		if seg.acked == 1 || seg.xmit < 2 {
			return false
		}
		needless := _itimediff(ts, seg.ts) < 0
		if needless {
			kcp.needless++
		}
		if !seg.byTimer {
			return needless // a fast retransmission: the floor is not what sent it
		}
		if needless {
			took := uint32(max(_itimediff(clock(), ts), 0))
			kcp.rx_minrto = min(max(2*kcp.rx_minrto, took+rtoGranularity), kcp.rtoFloorHi)
		} else {
			kcp.rx_minrto = max(kcp.rx_minrto/2, kcp.rtoFloorLo)
		}
		kcp.rx_rto = kcp.rtoNow()
		return needless
	}
	return false
}

// pto is the tail-loss probe timeout.
func (kcp *KCP) pto() uint32 {
	return max(2*uint32(kcp.rx_srtt)+rtoGranularity, kcp.rx_minrto)
}
