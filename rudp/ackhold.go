package rudp

import (
	"encoding/binary"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

// Held acknowledgements.
//
// kcp-go's Input flushes at once whenever an incoming packet acknowledges
// our data (the peer's una advances) or triggers a fast ack. In a
// request/response exchange every packet acknowledges the previous one, so
// that flush sends a packet holding nothing but the acks of the segments
// just received, before they are even delivered: a third datagram per
// exchange that the reply would have carried anyway. kcp-go cannot be told
// not to, so the output callback holds such a packet while Input runs
// (inInput) and lets the next packet of the session carry its segments in
// front of its own (see output); a flush that outputs nothing sends the
// held acks alone (sendHeldAcksLocked), and the delayed-ack timer makes sure
// some flush comes within ackDelay. Held segments keep their ts, so the
// peer's RTT estimate sees the wait, as with any delayed ack.

// maxHeldAcks bounds the acks held: a packet with more (KCP's ack clocking
// on a burst of data, see Input) goes out at once, with what was held.
const maxHeldAcks = 8

// input feeds one KCP packet to the state machine, holding the ack-only
// packets its flush produces. It runs under s.mu.
func (s *session) input(seg []byte) int {
	if !segmentsFit(seg) {
		return -1
	}
	s.inInput = true
	r := s.kcp.Input(seg, kcp.IKCP_PACKET_REGULAR, false)
	s.inInput = false
	return r
}

// holdLocked reports whether p (a KCP packet produced while Input runs)
// was held back instead of sent.
func (s *session) holdLocked(p []byte) bool {
	if !s.inInput || len(s.heldAcks)+len(p) > maxHeldAcks*kcpOverhead || !ackOnly(p) {
		return false
	}
	s.heldAcks = append(s.heldAcks, p...)
	return true
}

// sendHeldAcksLocked sends the held acks in a packet of their own; it runs
// after a flush, which carries them in its first packet if it has one.
func (s *session) sendHeldAcksLocked() {
	if len(s.heldAcks) == 0 || s.state != stateEstablished {
		s.heldAcks = s.heldAcks[:0]
		return
	}
	if s.tx == nil {
		s.tx = txPool.Get().(*txBatch)
	}
	s.tx.add(pktKCP, s.heldAcks)
	s.heldAcks = s.heldAcks[:0]
	s.lastSend.Store(s.t.now())
}

// ackOnly reports whether a KCP packet holds nothing but ACK segments.
func ackOnly(p []byte) bool {
	if len(p) < kcpOverhead {
		return false
	}
	for len(p) >= kcpOverhead {
		if p[4] != kcp.IKCP_CMD_ACK || p[20]|p[21]|p[22]|p[23] != 0 {
			return false
		}
		p = p[kcpOverhead:]
	}
	return len(p) == 0
}

// maxSegmentData is the most data one incoming KCP segment may carry:
// internal/kcp's Input refuses more too; checking first keeps a bad packet
// from being applied in part.
const maxSegmentData = kcp.MaxSegmentData

// segmentsFit reports whether every segment of a KCP packet declares a
// length within the packet and within maxSegmentData.
func segmentsFit(p []byte) bool {
	for len(p) >= kcpOverhead {
		n := binary.LittleEndian.Uint32(p[20:])
		if n > maxSegmentData || int(n) > len(p)-kcpOverhead {
			return false
		}
		p = p[kcpOverhead+int(n):]
	}
	return true
}
