package rudp

import (
	"net/netip"
	"runtime"
	"time"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

// The transport's own goroutines besides the read loop: the flusher
// (handed-over flushes, batched datagrams, delayed acks) and the timer
// (retransmissions, liveness).

// hotWindow: a small send coming this soon after the session's last flush
// by a sender is left to the flusher goroutine. An RPC at a time (tens of
// µs apart) is flushed by its sender at once; a tight loop of sends is
// not. Large messages fill whole segments anyway and are flushed inline.
const hotWindow = 15 * time.Microsecond

// yieldWindow: a sender that flushes this soon after the session's last
// flush by a sender lets other ready goroutines queue their messages
// first (flushUnlock's yield), so that they share the flush.
const yieldWindow = 50 * time.Microsecond

func (t *Transport) queueFlush(s *session) {
	t.flushMu.Lock()
	t.flushq = append(t.flushq, s)
	t.flushMu.Unlock()
	select {
	case t.flushWake <- struct{}{}:
	default:
	}
}

// flushLoop flushes sessions whose senders handed the job over, and
// sends the acks owed ackDelay after the read loop asks. The read loop
// arms ackTimer itself (Reset wakes no goroutine); a flush that carries
// the last acks owed stops it (ackCarried), so in a request/response
// exchange the flusher does not wake at all.
func (t *Transport) flushLoop() {
	defer t.wg.Done()
	var batch []*session
	var ubatch []*udest
	defer t.ackTimer.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-t.ackTimer.C:
			t.flushAcks()
			continue
		case <-t.flushWake:
		}
		runtime.Gosched() // let the senders that are ready queue more first
		t.flushMu.Lock()
		batch, t.flushq = t.flushq, batch[:0]
		ubatch, t.uflushq = t.uflushq, ubatch[:0]
		t.flushMu.Unlock()
		t.flushDatagrams(ubatch)
		clear(ubatch)
		for i, s := range batch {
			s.mu.Lock()
			s.queuedFlush = false
			s.sendFlushAt = t.now()
			s.flushUnlock(kcp.IKCP_FLUSH_FULL, false)
			batch[i] = nil
		}
	}
}

// timerLoop runs the retransmission timers of the sessions with data in
// flight, each when KCP says it is next due (at least every
// Config.Interval), and the sweep.
func (t *Transport) timerLoop() {
	defer t.wg.Done()
	sweepEvery := t.cfg.sweepEvery()
	timer := time.NewTimer(t.cfg.Interval)
	defer timer.Stop()
	active := make(map[*session]struct{})
	var nextSweep int64
	planned := t.now() + int64(t.cfg.Interval)
	t.timerPlanned.Store(planned)
	for {
		select {
		case <-t.done:
			return
		case <-timer.C:
			t.lateSweep = t.now()-planned > int64(sweepEvery)
		case <-t.wake:
			t.lateSweep = false
		}
		t.activeMu.Lock()
		for _, s := range t.newActive {
			active[s] = struct{}{}
		}
		clear(t.newActive)
		t.newActive = t.newActive[:0]
		t.activeMu.Unlock()
		now := t.now()
		due := now + int64(t.cfg.Interval)
		for s := range active {
			idle, at := s.tick()
			if idle {
				delete(active, s)
			} else if at > now {
				due = min(due, at)
			}
		}
		now = t.now()
		if t.hsStarted.Swap(false) {
			nextSweep = min(nextSweep, now+int64(sweepEvery)) // a handshake to retry
		}
		if now >= nextSweep {
			nextSweep = max(t.sweep(now), now+int64(sweepEvery))
		}
		next := time.Duration(nextSweep - now)
		if len(active) > 0 {
			next = min(next, time.Duration(due-now))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		next = max(next, timerSlack)
		timer.Reset(next)
		planned = t.now() + int64(next)
		t.timerPlanned.Store(planned)
	}
}

// timerSlack is the least the timer loop sleeps, and how much earlier
// than planned a retransmission timer must be due to wake it.
const timerSlack = 200 * time.Microsecond

// timerDueAt notes when s's next retransmission timer is due (a full
// flush just set it) and wakes the timer loop if it planned to sleep
// past it.
func (t *Transport) timerDueAt(s *session, due int64) {
	s.timerDue.Store(due)
	if s.active && due < t.timerPlanned.Load()-int64(timerSlack) {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// readBehind reports whether the read loop has a batch in hand or
// datagrams wait unread in the socket: acknowledgements may be among
// them.
func (t *Transport) readBehind() bool {
	return t.rxBusy.Load() || (t.batch != nil && t.batch.raw != nil && t.batch.raw.unread())
}

// watchHandshake makes the timer loop sweep within sweepEvery: a new
// session's handshake may need retries.
func (t *Transport) watchHandshake() {
	t.hsStarted.Store(true)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// sweepEvery is the sweep period while a handshake, data in flight or a
// partial unreliable message needs watching.
func (c Config) sweepEvery() time.Duration {
	return min(max(c.RetryTimeout/30, 10*time.Millisecond), 100*time.Millisecond)
}

// sweep enforces liveness: handshake retries and timeouts, keepalives, and
// the silence limit. It also expires partial unreliable messages. It
// returns when it next has work: every sweepEvery while a handshake, data
// in flight or a partial message is watched, else at the next keepalive
// or silence limit due, so that an idle transport wakes about once per
// keepalive period rather than every sweepEvery (in a process that
// otherwise sleeps each wake-up costs far more than the sweep).
// Keepalives due within the next sweepEvery go out with this sweep, so
// that idle sessions share wake-ups.
func (t *Transport) sweep(now int64) (due int64) {
	t.mu.RLock()
	all := make([]*session, 0, len(t.sessions))
	for _, s := range t.sessions {
		all = append(all, s)
	}
	t.mu.RUnlock()
	timeout := int64(t.cfg.RetryTimeout)
	keepalive := int64(t.cfg.keepalive())
	fast := int64(t.cfg.sweepEvery())
	due = now + keepalive
	for _, s := range all {
		if !s.mu.TryLock() {
			// Its holder may take long (a deliverer decoding a large
			// message in a process short of CPU): the peer still hears
			// from us, and the verdicts wait for the next sweep.
			t.keepaliveBusy(s, now, keepalive-fast)
			due = now
			continue
		}
		var reason error
		switch s.state {
		case stateDialing, stateConfirming:
			due = now // the next sweep comes after sweepEvery
			// Unanswered since the first SYN, or unproven since the
			// SYN-ACK; not judged while the read loop is behind.
			heard := s.created
			if s.state == stateConfirming {
				heard = s.lastRecv.Load()
			}
			unanswered := now-heard > timeout && !t.behind(heard+timeout)
			switch {
			case unanswered && s.state == stateConfirming && !s.redialed:
				t.redialLocked(s, now) // answered, but the proof was not taken
			case unanswered:
				reason = ErrUnreachable
			case now < s.synNext:
			case s.state == stateDialing:
				t.sendSynLocked(s, now)
			default:
				t.sendAckLocked(s, now)
			}
		case stateEstablished:
			switch {
			case now-s.lastRecv.Load() > timeout && !t.behind(s.lastRecv.Load()+timeout):
				reason = ErrPeerTimeout
			case s.stalledLocked(now, timeout) && !t.behind(s.stallSince+timeout):
				// Data in flight and nothing acknowledged: whatever still
				// answers does not serve this session.
				reason = ErrPeerTimeout
			case now-s.lastSend.Load() >= keepalive-fast:
				t.sendTagged(s, tagged{typ: pktPing, conv: s.conv, tag: s.keys.ping})
				s.lastSend.Store(now)
			}
			if reason == nil {
				due = min(due, s.lastSend.Load()+keepalive, s.lastRecv.Load()+timeout+1)
				if s.queuedLocked() > 0 || now-s.lastRecv.Load() > timeout {
					due = now // stalled data is checked every sweepEvery
				}
			}
		}
		s.mu.Unlock()
		if reason != nil {
			t.kill(s, reason, true) // the peer hears it (RST) if it has the session
		}
	}
	t.reasm.expire(now)
	if msgs, _ := t.reasm.pending(); msgs > 0 {
		due = now
	}
	t.expireUdests(now)
	t.cookies.get(t.cookieBucket(now)) // forgets the secrets of old buckets
	return due
}

// Probe sends a keepalive on the established session with addr if it
// sent nothing for at least quiet. A peer that restarted on that address
// answers it with a handshake (keyed: a dial back; else a hint that it has
// no such session), which ends the stale session at once with
// ErrPeerReset instead of at the next keepalive or the silence limit.
// mesh probes the peers of calls that wait for a reply.
func (t *Transport) Probe(addr netip.AddrPort, quiet time.Duration) {
	if s := t.lookup(addr); s != nil {
		t.keepaliveBusy(s, t.now(), int64(quiet))
	}
}

// keepaliveBusy sends s's keepalive without its lock (sendTagged needs
// none) if s is established and sent nothing for at least every.
func (t *Transport) keepaliveBusy(s *session, now, every int64) {
	p := s.ping.Load()
	if p == nil || now-s.lastSend.Load() < every {
		return
	}
	t.sendTagged(s, *p)
	s.lastSend.Store(now)
}

// ackCarried notes that a flush carried the acks a session owed; when no
// session owes any, the ack timer stops. It runs under s.mu.
func (t *Transport) ackCarried() {
	if t.acksOwed.Add(-1) != 0 {
		return
	}
	t.ackMu.Lock()
	if t.ackArmed && t.acksOwed.Load() == 0 {
		// A session that owes acks after this check is queued after it
		// and finds the timer unarmed, so it arms it again.
		t.ackTimer.Stop()
		t.ackArmed = false
		clear(t.ackq)
		t.ackq = t.ackq[:0]
	}
	t.ackMu.Unlock()
}
