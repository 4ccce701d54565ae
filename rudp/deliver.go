package rudp

import (
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

// Delivery of reliable messages. Only one goroutine at a time (the
// session's deliverer) pulls frames out of a session's KCP state and hands
// them to OnMessage, which keeps per-peer order; another goroutine that
// finds the role taken leaves a note (deliverMore) and the deliverer loops.
// A paused session's messages stay inside KCP: its receive queue fills,
// the window it advertises shrinks to zero, and the peer's sender waits.

// Pause stops delivering reliable messages of addr's session: they stay
// inside KCP, its receive window fills and the peer's sender slows down;
// acknowledgements of our own data are still processed. Messages already
// taken out of KCP when Pause is called are still delivered (the bound is
// soft by one batch). Safe from any goroutine, including OnMessage; an
// unknown address is ignored; a new session starts unpaused.
func (t *Transport) Pause(addr netip.AddrPort) {
	s := t.lookup(addr)
	if s == nil {
		return
	}
	s.mu.Lock()
	took := !s.paused && s.state != stateDead
	if took {
		s.paused = true
	}
	s.mu.Unlock()
	if took {
		t.stats.paused.Add(1)
	}
}

// Resume undoes Pause: what waits is delivered, in order, through
// OnMessage on a transport goroutine (not the caller's), and the window
// reopens (KCP tells the peer). Safe from any goroutine; an unknown
// address is ignored.
func (t *Transport) Resume(addr netip.AddrPort) {
	s := t.lookup(addr)
	if s == nil {
		return
	}
	s.mu.Lock()
	if !s.paused {
		s.mu.Unlock()
		return
	}
	s.paused = false
	post := !s.resumeQueued && s.state == stateEstablished && !t.closing.Load()
	if post {
		s.resumeQueued = true
		t.postEvent(event{kind: evResume, s: s})
	}
	s.mu.Unlock()
}

// pullLocked takes the decoded frames out of KCP into frames, unless the
// session is paused or another goroutine delivers (it then leaves a note).
// own reports whether the caller became the deliverer: it must hand frames
// to OnMessage and then call finishDelivery.
func (s *session) pullLocked(frames []frame) (out []frame, own, ackNow bool, err error) {
	if s.delivering {
		s.deliverMore = true
		return frames, false, false, nil
	}
	if s.state != stateEstablished {
		return frames, false, false, nil
	}
	if s.paused {
		// Its data waits in KCP, acknowledged (SendOptions.Done says so):
		// a paused receiver's window closes as it fills.
		s.kcp.CapUna(s.kcp.RcvNxt())
		return frames, false, false, nil
	}
	s.delivering = true
	frames, ackNow, err = s.recvLocked(frames)
	return frames, true, ackNow, err
}

// recvLocked decodes every complete frame KCP holds. It takes the data
// out of KCP in chunks of up to pullYield bytes; a chunk larger than
// lockedDecode is decoded without s.mu (only the deliverer, s.delivering,
// uses the decoder), so a deliverer that decodes slowly (a 10 MB frame in
// a process short of CPU) never holds up the read loop, the flusher or
// the timer: the peer keeps hearing from us, and new data keeps being
// acknowledged (by the read loop's acks, with the una this chunk moved).
// Letting go sends nothing by itself: an ack-only flush per chunk cost a
// third of the throughput of 1 KiB requests at c=64.
//
// The session acknowledges what it decoded cumulatively (una) at once,
// or, if the pull holds a frame that asks to be acknowledged once
// delivered (ackNow), after that frame's delivery (deliverFrames): a
// sender waiting on the acknowledgement (SendOptions.Done) then knows
// OnMessage has run. Segments are still acknowledged one by one as they
// arrive, so the sender does not send them again meanwhile. On return
// s.mu is held; the session may have died or been paused meanwhile.
func (s *session) recvLocked(frames []frame) ([]frame, bool, error) {
	ackNow := false
	emit := func(f frame, now bool) {
		f.ackNow = now
		frames = append(frames, f)
		ackNow = ackNow || now
	}
	var err error
	for err == nil && s.state == stateEstablished && !s.paused {
		var n int
		s.taken, n = s.kcp.Take(s.taken[:0], pullYield)
		if n == 0 {
			break
		}
		end := s.kcp.Pulled()
		unlocked := n > lockedDecode
		if unlocked {
			s.unlockAndWrite()
		}
		first := len(frames)
		for _, p := range s.taken {
			if err = s.dec.feed(p, emit); err != nil {
				break
			}
			if h := testDecodeHook.Load(); h != nil {
				(*h)(s.t, len(p))
			}
		}
		kcp.Release(s.taken)
		for i := first; i < len(frames); i++ {
			frames[i].una = end
		}
		if unlocked {
			s.mu.Lock()
		}
		if s.state == stateEstablished && !ackNow {
			s.kcp.CapUna(end)
		}
	}
	return frames, ackNow, err
}

// pullYield is how many bytes recvLocked takes out of KCP at a time.
const pullYield = 256 << 10

// lockedDecode is the largest chunk recvLocked decodes under s.mu: small
// pulls (a request, its reply) cost no extra lock round.
const lockedDecode = 16 << 10

// testDecodeHook, set by tests only, runs after each segment decoded (it
// stands in for a deliverer short of CPU).
var testDecodeHook atomic.Pointer[func(t *Transport, n int)]

// finishDelivery runs after the deliverer handed its frames to OnMessage:
// it delivers what arrived or was resumed meanwhile, then gives up the
// role. It returns frames emptied, for reuse. Off the read goroutine,
// the work OnBlocking hands back is appended to runs (see deliverFrames).
func (t *Transport) finishDelivery(s *session, frames []frame, onReader bool, runs *[]func()) []frame {
	frames = clearFrames(frames)
	s.mu.Lock()
	for s.deliverMore && !s.paused && s.state == stateEstablished {
		s.deliverMore = false
		var err error
		frames, _, err = s.recvLocked(frames)
		if err != nil {
			s.delivering = false
			s.unlockAndWrite()
			t.protocolError(s, err)
			return clearFrames(frames)
		}
		if len(frames) == 0 {
			continue
		}
		s.unlockAndWrite()
		if onReader && t.mayBlock(frames) {
			// Delivered after the read role is handed on (readers.go);
			// the session keeps its deliverer until then.
			t.claimed = append(t.claimed, claim{s: s, frames: slices.Clone(frames)})
			return clearFrames(frames)
		}
		t.deliverFrames(s, frames, !onReader, runs)
		frames = clearFrames(frames)
		// Recv may have reopened our window: the flush tells the peer,
		// along with the acknowledgements owed.
		s.mu.Lock()
		s.flushUnlock(kcp.IKCP_FLUSH_ACKONLY, false)
		s.mu.Lock()
	}
	s.delivering = false
	s.deliverMore = false
	if s.state == stateDead {
		s.dec = frameDecoder{}
	}
	s.mu.Unlock()
	return frames
}

// deliverResumed runs on the event goroutine after Resume. Where
// messages may block (Config.MayBlock) it delivers on a goroutine of its
// own instead, which runs what OnBlocking hands back.
func (t *Transport) deliverResumed(s *session, frames []frame) []frame {
	s.mu.Lock()
	s.resumeQueued = false
	if s.delivering {
		s.deliverMore = true // the deliverer loops
		s.mu.Unlock()
		return frames
	}
	if s.paused || s.state != stateEstablished {
		s.mu.Unlock()
		return frames
	}
	s.delivering, s.deliverMore = true, true
	s.mu.Unlock()
	if t.cfg.MayBlock != nil {
		go func() {
			var runs []func()
			t.finishDelivery(s, nil, false, &runs)
			runAll(runs)
		}()
		return frames
	}
	return t.finishDelivery(s, frames, false, nil)
}

// runAll runs the work OnBlocking handed back, in order.
func runAll(runs []func()) {
	for i, r := range runs {
		r()
		runs[i] = nil
	}
}

func (t *Transport) protocolError(s *session, err error) {
	t.warn.Warn("rudp: protocol error, resetting session", "local", t.local, "peer", s.addr, "err", err)
	t.kill(s, ErrProtocol, true)
}

// deliverOwn hands the frames the read goroutine pulled (it became their
// session's deliverer) to OnMessage, or, for kinds that may block, leaves
// them for after the read role is handed on (readers.go).
func (t *Transport) deliverOwn(s *session, frames []frame, ackNow bool) []frame {
	if t.mayBlock(frames) {
		t.claimed = append(t.claimed, claim{s: s, frames: slices.Clone(frames), ackNow: ackNow})
		return clearFrames(frames)
	}
	t.deliverFrames(s, frames, false, nil)
	return t.finishDelivery(s, frames, true, nil)
}

// deliverClaim hands frames to OnMessage, or OnBlocking (the claim's ackNow
// is not needed: deliverFrames acknowledges each frame that asks, once
// delivered).
func (t *Transport) deliverClaim(s *session, frames []frame, runs *[]func()) {
	t.deliverFrames(s, frames, true, runs)
}

// mayBlock reports whether any of frames is of a kind Config.MayBlock
// claims.
func (t *Transport) mayBlock(frames []frame) bool {
	if t.cfg.MayBlock == nil {
		return false
	}
	for _, f := range frames {
		if t.cfg.MayBlock(f.kind) {
			return true
		}
	}
	return false
}

// deliverFrames hands frames to OnMessage, or those of the kinds
// Config.MayBlock claims to Config.OnBlocking if set: the work it hands
// back is appended to runs, which the caller runs once it gave up the
// session's delivery role (never on the read goroutine, which claims such
// frames, readers.go). With cork (off the read goroutine), what OnMessage
// sends to the session while frames after its own wait stays unflushed
// (session.corked): the replies to a burst of requests leave together,
// after the last one, in shared datagrams.
//
// After the last frame that asks for it (ackNow), the session
// acknowledges the stream up to the end of that frame's pull at once.
func (t *Transport) deliverFrames(s *session, frames []frame, cork bool, runs *[]func()) {
	cork = cork && len(frames) > 1
	last := -1
	for i := range frames {
		if frames[i].ackNow {
			last = i
		}
	}
	for i := range frames {
		if cork {
			s.mu.Lock()
			s.corked = i < len(frames)-1
			s.mu.Unlock()
		}
		if f := &frames[i]; runs != nil && t.cfg.OnBlocking != nil && t.cfg.MayBlock(f.kind) {
			if run := t.cfg.OnBlocking(s.addr, f.kind, f.bytes()); run != nil {
				*runs = append(*runs, run)
			}
		} else {
			t.deliver(s.addr, f.kind, f.bytes(), true)
		}
		if i == last {
			s.mu.Lock()
			if s.state == stateEstablished {
				s.kcp.CapUna(frames[i].una)
			}
			s.flushUnlock(kcp.IKCP_FLUSH_ACKONLY, false)
		}
	}
	if cork {
		s.mu.Lock()
		s.flushUnlock(kcp.IKCP_FLUSH_FULL, false)
	}
}
