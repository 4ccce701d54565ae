package rudp

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

type sessionState uint8

const (
	stateDialing sessionState = iota
	stateEstablished
	stateDead
)

// kcpMSS is the payload of one KCP segment in a kcpMTU-sized packet.
const kcpMSS = kcpMTU - kcp.IKCP_OVERHEAD

// session is the one reliable channel between this transport and a peer
// address, used in both directions. Its KCP state machine is driven by the
// read loop (Input), by senders (Send + flush) and by the timer
// (retransmissions), always under mu.
type session struct {
	t       *Transport
	addr    netip.AddrPort
	created int64

	lastRecv atomic.Int64 // transport clock, ns
	lastSend atomic.Int64

	mu        sync.Mutex
	state     sessionState
	remoteInc uint64
	conv      uint32
	kcp       *kcp.KCP
	active    bool // listed in the timer's active set

	// Outgoing bytes: framed messages not yet handed to KCP live in
	// pending[pendOff:]. Counters are cumulative byte offsets in the stream.
	pending    []byte
	pendOff    int
	appended   uint64 // bytes framed so far
	handed     uint64 // bytes handed to KCP
	ackedBytes uint64 // bytes the peer acknowledged
	pushed     uint64 // KCP segments handed over
	ackedSegs  uint64
	segEnds    fifo // stream offset at the end of each unacknowledged segment
	msgEnds    fifo // stream offset at the end of each unacknowledged message

	dec     frameDecoder
	rbuf    []byte
	obuf    []byte
	changed signal // acks progressed or the session died
	err     *PeerError

	synNext int64 // when to resend SYN while dialing
	synWait time.Duration
}

func newSession(t *Transport, addr netip.AddrPort, now int64) *session {
	s := &session{t: t, addr: addr, created: now, synWait: 50 * time.Millisecond}
	s.lastRecv.Store(now)
	s.lastSend.Store(now)
	return s
}

// establishLocked turns a dialing (or fresh) session into an established one
// with the given peer incarnation.
func (s *session) establishLocked(remoteInc uint64, now int64) {
	s.remoteInc = remoteInc
	s.conv = convOf(s.t.inc, remoteInc)
	k := kcp.NewKCP(s.conv, s.output)
	k.NoDelay(1, int(s.t.cfg.Interval/time.Millisecond), 2, 1)
	k.WndSize(s.t.cfg.SendWindow, s.t.cfg.RecvWindow)
	k.SetMtu(kcpMTU)
	s.kcp = k
	s.rbuf = make([]byte, 2*MaxPacketSize)
	s.obuf = make([]byte, 1, MaxPacketSize+kcp.IKCP_OVERHEAD)
	s.obuf[0] = pktKCP
	s.state = stateEstablished
	s.lastRecv.Store(now)
	if s.pendOff < len(s.pending) {
		s.pushLocked()
		kcpFlush(s.kcp, kcp.IKCP_FLUSH_FULL)
	}
}

// output is KCP's output callback: one packet, prefixed with its type byte.
// It runs under s.mu.
func (s *session) output(buf []byte, size int) {
	b := append(s.obuf[:1], buf[:size]...)
	s.t.write(b, s.addr)
	s.lastSend.Store(s.t.now())
}

// queuedLocked is how many framed bytes are not yet acknowledged.
func (s *session) queuedLocked() uint64 { return s.appended - s.ackedBytes }

// idleLocked reports whether the session has nothing left to transmit.
func (s *session) idleLocked() bool {
	if s.state != stateEstablished {
		return s.state == stateDead || s.pendOff == len(s.pending)
	}
	return s.pendOff == len(s.pending) && s.kcp.WaitSnd() == 0
}

// pushLocked hands pending bytes to KCP in segment-sized pieces while KCP's
// queue has room, so small messages share segments under load.
func (s *session) pushLocked() bool {
	limit := 2 * s.t.cfg.SendWindow
	moved := false
	for s.pendOff < len(s.pending) && s.kcp.WaitSnd() < limit {
		n := min(len(s.pending)-s.pendOff, kcpMSS)
		s.kcp.Send(s.pending[s.pendOff : s.pendOff+n])
		s.pendOff += n
		s.handed += uint64(n)
		s.pushed++
		s.segEnds.push(s.handed)
		moved = true
	}
	switch {
	case s.pendOff == len(s.pending):
		if cap(s.pending) > 4<<20 {
			s.pending = nil
		} else {
			s.pending = s.pending[:0]
		}
		s.pendOff = 0
	case s.pendOff > 1<<20 && s.pendOff*2 > len(s.pending):
		n := copy(s.pending, s.pending[s.pendOff:])
		s.pending, s.pendOff = s.pending[:n], 0
	}
	return moved
}

// ackLocked folds KCP's acknowledgements into the byte and message counters.
// It reports whether anything new was acknowledged.
func (s *session) ackLocked() bool {
	acked := s.pushed - uint64(s.kcp.WaitSnd())
	if acked == s.ackedSegs {
		return false
	}
	for s.ackedSegs < acked && s.segEnds.len() > 0 {
		s.ackedBytes = s.segEnds.pop()
		s.ackedSegs++
	}
	for s.msgEnds.len() > 0 && s.msgEnds.front() <= s.ackedBytes {
		s.msgEnds.pop()
	}
	return true
}

// dieLocked marks the session dead and records why.
func (s *session) dieLocked(reason error) {
	if s.kcp != nil {
		s.ackLocked()
	}
	s.state = stateDead
	s.err = &PeerError{Addr: s.addr, Reason: reason, Unacked: s.msgEnds.len()}
	s.kcp = nil
	s.pending, s.pendOff = nil, 0
	s.segEnds, s.msgEnds = fifo{}, fifo{}
	s.dec = frameDecoder{}
	s.changed.broadcast()
}

// tick runs the retransmission timer; it reports whether the session is
// idle and can leave the active set.
func (s *session) tick() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateEstablished {
		s.pushLocked()
		kcpFlush(s.kcp, kcp.IKCP_FLUSH_FULL)
		if s.ackLocked() {
			s.changed.broadcast()
		}
	}
	if s.idleLocked() {
		s.active = false
		return true
	}
	return false
}
