package rudp

import (
	"net/netip"
	"time"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

func (t *Transport) readFrom(buf []byte) (int, netip.AddrPort, error) {
	if t.fast != nil {
		n, ap, err := t.fast.ReadFromUDPAddrPort(buf)
		return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err
	}
	n, a, err := t.conn.ReadFrom(buf)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	ap, err := addrPortOf(a)
	return n, ap, err
}

// readBatch is how many packets one recvmmsg call takes at most.
const readBatch = 32

// ackDelay is how long a pure acknowledgement waits for data going the
// same way to carry it. A request's ack usually rides on its reply, and
// a reply's on the caller's next request, which halves the datagrams of a
// request/response exchange; KCP still acks at once when a full packet of
// acks is owed, and retransmission timers (30 ms minimum) dwarf the wait.
const ackDelay = 200 * time.Microsecond

// scheduleAcks hands the sessions that owe acks after the last batch of
// packets to the ack timer.
func (t *Transport) scheduleAcks() {
	if len(t.acksDue) == 0 {
		return
	}
	t.ackMu.Lock()
	t.ackq = append(t.ackq, t.acksDue...)
	arm := !t.ackArmed
	t.ackArmed = true
	t.ackMu.Unlock()
	clear(t.acksDue)
	t.acksDue = t.acksDue[:0]
	if arm {
		t.ackTimer.Reset(ackDelay) // no goroutine wakes for this (loops.go)
	}
}

// primeWindow: a session that began to owe a delayed ack this recently is
// in a conversation (request/response), and its data going out is likely
// answered soon.
const primeWindow = 5 * ackDelay

// primeAcks arms the ack timer after s sent data, if s is in a
// conversation and the timer is not armed: the answer's ack then finds it
// armed. Arming a timer in a process that is otherwise idle wakes a second
// OS thread (the runtime makes sure some thread will see it fire), so it is
// better done here, with the data already on the wire, than when the
// answer arrives, where the wake-up delays its delivery. In a steady
// exchange the timer never fires: each packet out carries the acks owed
// and stops it (ackCarried), and is followed by the next priming. A primed
// timer that fires before an ack has waited ackDelay waits again for the
// rest (flushAcks), so priming never shortens the wait for data to carry
// an ack.
func (t *Transport) primeAcks(s *session) {
	if due := s.ackDueAt.Load(); due == 0 || t.now()-due > int64(primeWindow) {
		return
	}
	t.ackMu.Lock()
	arm := !t.ackArmed
	t.ackArmed = true
	t.ackMu.Unlock()
	if arm {
		t.ackTimer.Reset(ackDelay)
	}
}

// flushAcks sends the acknowledgements that no outgoing data carried
// meanwhile (a FULL flush clears ackDue).
func (t *Transport) flushAcks() {
	t.ackMu.Lock()
	due := t.ackq
	t.ackq, t.ackArmed = t.ackSpare[:0], false
	t.ackMu.Unlock()
	now := t.now()
	var later []*session // rarely any: no scratch kept
	wait := int64(ackDelay)
	for _, s := range due {
		s.mu.Lock()
		if left := int64(ackDelay) - (now - s.ackDueAt.Load()); s.ackDue && left > 0 {
			s.mu.Unlock() // a primed timer fired early: wait for the rest
			later = append(later, s)
			wait = min(wait, left)
			continue
		}
		if s.ackDue {
			s.ackDue = false
			t.acksOwed.Add(-1)
			s.flushUnlock(kcp.IKCP_FLUSH_ACKONLY, false)
		} else {
			s.unlockAndWrite()
		}
	}
	clear(due)
	t.ackMu.Lock()
	t.ackSpare = due[:0]
	if len(later) > 0 {
		t.ackq = append(t.ackq, later...)
		if !t.ackArmed {
			t.ackArmed = true
			t.ackTimer.Reset(time.Duration(wait))
		}
	}
	t.ackMu.Unlock()
}

func (t *Transport) bad(cause string, from netip.AddrPort) {
	t.stats.badPackets.Add(1)
	t.warn.Warn("rudp: dropped packet: "+cause, "local", t.local, "from", from)
}

// handlePacket is the one place datagrams enter the transport: every
// packet read from the socket is parsed here first. With keys it is
// opened (keyed.go) before anything else looks at it.
func (t *Transport) handlePacket(p []byte, from netip.AddrPort) {
	if len(p) == 0 {
		t.bad("empty", from)
		return
	}
	if t.ks.keyed {
		t.handleSealed(p, from)
		return
	}
	t.handlePlain(p, from)
}

// handlePlain handles a packet in the clear: as read without keys, or
// opened with keys.
func (t *Transport) handlePlain(p []byte, from netip.AddrPort) {
	switch p[0] {
	case pktKCP:
		t.handleKCP(p[1:], from)
	case pktDatagram:
		if len(p) < 2 {
			t.bad("short datagram", from)
			return
		}
		t.deliver(from, p[1], append([]byte{}, p[2:]...), false)
	case pktDatagramBatch:
		err := splitBatch(p, func(kind byte, payload []byte) {
			t.deliver(from, kind, append([]byte{}, payload...), false)
		})
		if err != nil {
			t.bad(err.Error(), from)
		}
	case pktFragment:
		kind, msg, err := t.reasm.add(from, p, t.now())
		if err != nil {
			t.bad(err.Error(), from)
			return
		}
		if msg != nil {
			t.deliver(from, kind, msg, false)
		}
	case pktSyn, pktSynAck, pktAck:
		h, ok := parseHandshake(p)
		if !ok {
			t.bad("bad handshake packet", from)
			return
		}
		t.handleHandshake(h, from)
	case pktPing, pktFin, pktRst, pktNoSess:
		c, ok := parseTagged(p)
		if !ok {
			t.bad("bad control packet", from)
			return
		}
		t.handleTagged(c, from)
	case pktCaps:
		c, ok := parseCaps(p)
		if !ok {
			t.bad("bad CAPS packet", from)
			return
		}
		t.handleCaps(c, from)
	default:
		t.bad("unknown packet type", from)
	}
}

func (t *Transport) deliver(from netip.AddrPort, kind byte, payload []byte, reliable bool) {
	if t.cfg.OnMessage != nil {
		t.cfg.OnMessage(from, kind, payload, reliable)
	}
}

func (t *Transport) handleKCP(seg []byte, from netip.AddrPort) {
	conv, ok := kcp.Conv(seg)
	if !ok {
		t.bad("short KCP packet", from)
		return
	}
	s := t.lookup(from)
	if s == nil {
		t.noSess(from, conv)
		return
	}
	now := t.now()
	s.mu.Lock()
	up := false
	switch {
	case s.state == stateConfirming && conv == s.keys.conv:
		// The peer has the session: this is its proof.
		s.establishLocked(now)
		up = true
	case s.state == stateDialing || s.state == stateConfirming:
		// Data of a session we are replacing; KCP retransmits.
		s.mu.Unlock()
		return
	case s.state != stateEstablished:
		s.mu.Unlock()
		return
	case conv != s.conv:
		// A session we do not have (any more): the peer may probe.
		s.mu.Unlock()
		t.noSess(from, conv)
		return
	}
	if up {
		defer t.peerUp(s, s.remoteInc)
	}
	s.lastRecv.Store(now)
	in, err := s.kcp.Input(seg) // sends nothing: see the flush below
	if err != nil {
		s.unlockAndWrite()
		t.bad("malformed KCP segment", from)
		return
	}
	if closed := in.Window == 0; closed != s.peerClosed || in.Acked > 0 {
		// The peer's window opened or closed (a paused peer is alive, not
		// stalled), or it took new data: alive and serving the session,
		// even while the una it reports waits for its deliverer (CapUna).
		s.peerClosed = closed
		s.progressLocked(now)
	}
	frames, own, ackNow, perr := s.pullLocked(t.frames[:0])
	if perr != nil {
		s.delivering = false
		s.unlockAndWrite()
		t.frames = clearFrames(frames)
		t.protocolError(s, perr)
		return
	}
	if s.state != stateEstablished {
		// It died while the pull let go of s.mu (recvLocked).
		s.unlockAndWrite()
		if own {
			t.frames = t.deliverOwn(s, frames, false)
		}
		return
	}
	if s.ackLocked() {
		s.progressLocked(now)
		s.changed.broadcast()
	}
	// What to send now. The acknowledgements the packet owes wait up to
	// ackDelay for data going the same way to carry them (in a
	// request/response exchange the reply does, which saves a datagram),
	// unless data is due now anyway or a packet's worth is owed.
	switch {
	case s.pushLocked() || in.Flush == kcp.IKCP_FLUSH_FULL:
		s.flushUnlock(kcp.IKCP_FLUSH_FULL, false)
	case ackNow:
		// Acknowledged after delivery: a sender waiting on the
		// acknowledgement knows OnMessage has run.
		s.unlockAndWrite()
	case in.Flush == kcp.IKCP_FLUSH_ACKONLY:
		s.flushUnlock(kcp.IKCP_FLUSH_ACKONLY, false)
	case in.OwesAcks: // a pure acknowledgement owes nothing back
		if !s.ackDue {
			s.ackDue = true
			s.ackDueAt.Store(now)
			t.acksOwed.Add(1)
			t.acksDue = append(t.acksDue, s)
		}
		s.unlockAndWrite()
	default:
		s.unlockAndWrite()
	}
	if !own {
		return
	}
	t.frames = t.deliverOwn(s, frames, ackNow) // deliver.go
}

func clearFrames(f []frame) []frame {
	clear(f)
	return f[:0]
}

func (t *Transport) peerUp(s *session, inc uint64) {
	s.mu.Lock()
	activate := !s.active && !s.idleLocked()
	s.active = s.active || activate
	if t.cfg.OnPeerUp != nil && s.state == stateEstablished {
		t.postEvent(event{kind: evUp, addr: s.addr, inc: inc})
	}
	s.mu.Unlock()
	if activate {
		t.activate(s)
	}
}
