package rudp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

type sessionState uint8

const (
	stateDialing    sessionState = iota // SYN sent
	stateConfirming                     // SYN-ACK received, ACK sent, waiting for proof the peer has it
	stateEstablished
	stateDead
)

// session is the one reliable channel between this transport and a peer
// address, used in both directions. Its KCP state machine is driven by the
// read loop (Input), by senders (Send + flush) and by the timer
// (retransmissions), always under mu. Its state comes in parts, one per
// concern, each saying where it is used; every part is guarded by mu
// unless it says otherwise.
type session struct {
	t       *Transport
	addr    netip.AddrPort
	naddr   net.Addr // addr, for the socket calls that want one
	created int64

	lastRecv atomic.Int64           // transport clock, ns
	lastSend atomic.Int64           // ditto
	ackDueAt atomic.Int64           // when ackDue was last set (primeAcks, flushAcks)
	timerDue atomic.Int64           // when KCP's next retransmission timer is due (loops.go)
	ping     atomic.Pointer[tagged] // the keepalive while established (sweep)

	mu        sync.Mutex
	state     sessionState
	remoteInc uint64
	conv      uint32
	kcp       *kcp.KCP
	changed   signal // acks progressed or the session died
	err       *PeerError

	handshakeState
	pathState
	flushState
	sendState
	deliveryState
	progressState
}

// handshakeState: dialing, confirming and probing (handshake.go, keyed.go).
type handshakeState struct {
	synNext        int64 // when to resend SYN (dialing) or ACK (confirming)
	synWait        time.Duration
	myTok, peerTok uint64
	keys           sessionKeys
	probeTok       uint64 // token of the last probe SYN
	probeAt        int64
	establishedAt  int64
	sec            sessSec // cluster-key state (keyed.go)
	dialBack       bool    // dialed back on a stray sealed packet, not yet up (keyed.go)
	udial          bool    // dialed for unreliable batching, not yet up (ubatch.go)
	redialed       bool    // its handshake was started again once (redialLocked)
}

// pathState: packet and segment sizes (pathmtu.go, caps.go).
type pathState struct {
	mtu          int           // KCP packet size
	mss          int           // KCP segment data size: mtu - kcpOverhead
	peerPacket   int           // the largest datagram the peer reads (its CAPS; 0: not heard)
	peerSegment  int           // the largest segment the peer accepts (its CAPS)
	peerFeatures atomic.Uint32 // the peer's Config.Features (its CAPS)
	capsSent     int           // CAPS sent on this session
}

// flushState: who flushes and when (flushUnlock, loops.go, readloop.go).
type flushState struct {
	active       bool // listed in the timer's active set
	flushing     bool // a goroutine is flushing and writing (see flushUnlock)
	queuedFlush  bool // listed for the transport's flusher goroutine
	sendFlushAt  int64
	flushWant    kcp.FlushType
	ackDue       bool     // owes acks no data carried yet (see scheduleAcks)
	resendWaited bool     // tick let the read loop go first once for a due retransmission
	tx           *txBatch // packets flushed under mu, written once it is released
	fire         []firing // callbacks to run once mu is released
}

// sendState: outgoing bytes (send.go, sendqueue.go). Framed messages
// waiting for KCP window room live in queue; the counters are cumulative
// byte offsets in the stream.
type sendState struct {
	queue       sendQueue
	direct      gather   // a message going straight to KCP (reused)
	directBufs  [][]byte // its slices (reused)
	hdr         [frameHeaderSize]byte
	appended    uint64 // bytes framed so far
	retransmits uint64 // data segments sent again (PeerStatus)
	handed      uint64 // bytes handed to KCP
	ackedBytes  uint64 // bytes the peer acknowledged
	pushed      uint64 // KCP segments handed over
	ackedSegs   uint64
	segEnds     fifo // stream offset at the end of each unacknowledged segment
	msgEnds     fifo // stream offset at the end of each unacknowledged message
	tracked     []trackedMsg
}

// deliveryState: incoming messages (deliver.go).
type deliveryState struct {
	paused       bool         // Pause: frames stay in KCP
	delivering   bool         // a goroutine is handing frames to OnMessage
	deliverMore  bool         // a note for that goroutine: pull again
	resumeQueued bool         // an evResume is queued
	corked       bool         // sends leave the flush to the deliverer (deliverFrames)
	dec          frameDecoder // the deliverer's (delivering), used without mu
	taken        [][]byte     // the deliverer's: segment data taken out of KCP (recvLocked)
}

// progressState: whether data in flight moves (stalledLocked, sweep).
// stallSince is when data last went from idle to in flight or was last
// acknowledged (or the peer's window last opened or closed).
type progressState struct {
	stallSince int64
	peerClosed bool   // the peer's last KCP packet advertised a zero window
	stuckSn    uint32 // the oldest unacknowledged segment at stallSince (kcp.Head)
	stuckSent  uint32 // and how often it had been sent then (0: none in flight)
}

func newSession(t *Transport, addr netip.AddrPort, now int64) *session {
	s := &session{t: t, addr: addr, created: now, naddr: net.UDPAddrFromAddrPort(addr)}
	s.synWait = 50 * time.Millisecond
	s.lastRecv.Store(now)
	s.lastSend.Store(now)
	return s
}

// confirmLocked moves a dialing session to confirming: the keys are
// known, the data waits for the peer's proof that it has the session.
func (s *session) confirmLocked(remoteInc, peerTok uint64, now int64) {
	s.remoteInc, s.peerTok = remoteInc, peerTok
	s.keys = deriveKeys(s.t.inc, s.myTok, remoteInc, peerTok)
	s.state = stateConfirming
	s.lastRecv.Store(now) // the SYN-ACK: the handshake was answered
	s.synWait = 50 * time.Millisecond
}

// establishLocked creates the KCP state of a session whose keys are set
// and hands it the data queued meanwhile.
func (s *session) establishLocked(now int64) {
	s.conv = s.keys.conv
	k := kcp.NewKCP(s.conv)
	// Fast retransmission on the first acknowledgement past a gap; the
	// RTO follows the round trip from a low floor that rises while
	// retransmissions turn out needless (internal/kcp rto.go).
	k.NoDelay(1, int(s.t.cfg.Interval/time.Millisecond), 1, 1)
	k.SetRTOFloor(minRTOFloor, maxRTOFloor)
	k.WndSize(s.t.cfg.SendWindow, s.t.cfg.RecvWindow)
	s.mtu = s.t.sessionMTU(s.addr, s.peerPacket) // pathmtu.go, caps.go
	maxSeg := kcp.MaxSegmentData
	if s.peerSegment > 0 {
		maxSeg = s.peerSegment
	}
	k.SetSizes(s.mtu, maxSeg)
	s.mss = k.Mss()
	k.SetRecvLimit(s.t.cfg.RecvWindow * recvBytesPerSegment)
	k.CapUna(k.Pulled()) // what is pulled is acknowledged (deliver.go recvLocked)
	s.kcp = k
	s.state = stateEstablished
	s.dialBack, s.udial = false, false
	s.ping.Store(&tagged{typ: pktPing, conv: s.conv, tag: s.keys.ping})
	s.establishedAt = now
	s.lastRecv.Store(now)
	s.progressLocked(now)
	if s.queue.n > 0 {
		s.pushLocked()
		s.flushKCPLocked(kcp.IKCP_FLUSH_FULL)
	}
	s.releaseHeldLocked()
}

// flushKCPLocked flushes KCP into the session's batch of packets (its
// buffers are the batch's: no copy on the way to the socket), written by
// unlockAndWrite, and notes what went out.
func (s *session) flushKCPLocked(ft kcp.FlushType) {
	if s.tx == nil {
		s.tx = txPool.Get().(*txBatch)
	}
	info := s.kcp.Flush(ft, s.tx)
	if ft == kcp.IKCP_FLUSH_FULL {
		s.t.timerDueAt(s, s.t.now()+int64(info.Next))
	}
	if info.Packets == 0 {
		return
	}
	s.lastSend.Store(s.t.now())
	s.tx.data = s.tx.data || info.Data
	if info.Resent > 0 {
		s.retransmits += uint64(info.Resent)
		s.t.stats.retransmits.Add(uint64(info.Resent))
	}
}

// progressLocked notes that the session moved: data was acknowledged
// (cumulatively or a segment at a time), or the peer's window opened or
// closed.
func (s *session) progressLocked(now int64) {
	s.stallSince = now
	s.stuckSn, s.stuckSent = 0, 0
	if s.kcp != nil {
		if sn, sent, ok := s.kcp.Head(); ok {
			s.stuckSn, s.stuckSent = sn, sent
		}
	}
}

// stalledLocked reports whether data in flight has had no acknowledgement
// for timeout while the peer's window is open, despite stallRetransmits
// retransmissions of the oldest unacknowledged segment since. The count
// keeps a lossy but working path (whose retransmission timer has grown)
// from counting as dead.
func (s *session) stalledLocked(now, timeout int64) bool {
	if s.queuedLocked() == 0 || s.peerClosed || now-s.stallSince <= timeout || s.kcp == nil {
		return false
	}
	sn, sent, ok := s.kcp.Head()
	if !ok {
		return false
	}
	base := uint32(1) // sent first after stallSince
	if s.stuckSent > 0 && sn == s.stuckSn {
		base = s.stuckSent
	}
	return sent >= base+stallRetransmits
}

// stallRetransmits: with 20% loss each way, ten losses in a row of one
// segment or its acknowledgement happen about once in 27,000 stalls.
const stallRetransmits = 10

// flushUnlock flushes KCP, releases s.mu and writes the packets. If
// another goroutine is already flushing this session, it only leaves a
// note: that goroutine flushes again after its write, so messages queued
// by many senders meanwhile leave in shared packets and syscalls. The
// flusher takes at most a few extra rounds, then hands the job back.
func (s *session) flushUnlock(ft kcp.FlushType, yield bool) {
	if s.state != stateEstablished {
		s.unlockAndWrite()
		return
	}
	if s.flushing {
		s.flushWant = max(s.flushWant, ft)
		s.unlockAndWrite()
		return
	}
	s.flushing = true
	if s.ackDue {
		s.ackDue = false // the flush below carries the acks owed
		s.t.ackCarried()
	}
	if yield {
		// Let goroutines that are ready to run (other senders, typically
		// woken by the same batch of responses) queue their messages
		// first, so they share this flush. With nothing else runnable
		// this costs next to nothing.
		s.mu.Unlock()
		runtime.Gosched()
		s.mu.Lock()
		if s.state != stateEstablished {
			s.flushing = false
			s.unlockAndWrite()
			return
		}
	}
	for round := 0; ; round++ {
		if ft == kcp.IKCP_FLUSH_FULL {
			s.pushLocked() // what senders left queued for this flush
		}
		s.flushKCPLocked(ft)
		s.unlockAndWrite()
		s.mu.Lock()
		if s.flushWant == 0 || s.state != stateEstablished {
			break
		}
		ft, s.flushWant = s.flushWant, 0
		if round == 8 {
			if ft == kcp.IKCP_FLUSH_FULL {
				s.pushLocked()
			}
			s.flushKCPLocked(ft) // the last round; later notes flush themselves
			break
		}
	}
	s.flushing = false
	s.unlockAndWrite()
}

// unlockAndWrite releases s.mu, then writes the packets flushed under it.
func (s *session) unlockAndWrite() {
	b, fire := s.tx, s.fire
	s.tx, s.fire = nil, nil
	s.mu.Unlock()
	if b != nil {
		s.t.writeBatch(b, s)
	}
	for _, f := range fire {
		f.done(f.err)
	}
}

// trackedMsg is a message sent with SendTracked: done hears when the
// stream up to end is acknowledged, or the session dies first.
type trackedMsg struct {
	end  uint64
	done func(error)
}

type firing struct {
	done func(error)
	err  error
}

// enqueueLocked frames one message. When the session is established and
// nothing waits ahead of it, it goes straight into KCP from the caller's
// slices; whatever does not fit the window is copied into the queue. With
// later (a flush will follow soon: see enqueue), it joins the queue, so
// that the messages queued until that flush share KCP segments.
func (s *session) enqueueLocked(kind byte, size int, parts [][]byte, ackNow, later bool) {
	binary.BigEndian.PutUint32(s.hdr[:], frameField(size, ackNow))
	s.hdr[4] = kind
	s.appended += uint64(frameHeaderSize + size)
	s.msgEnds.push(s.appended)
	if later || s.state != stateEstablished {
		s.queue.appendFrame(kind, size, parts, ackNow)
		return
	}
	if s.queue.n > 0 {
		s.pushLocked()
	}
	if s.queue.n > 0 && !s.roomLocked(s.queue.n+frameHeaderSize+size) {
		// KCP takes no piece now: the frame waits behind the queue
		// (copied; what waits is not copied again).
		s.queue.appendFrame(kind, size, parts, ackNow)
		return
	}
	// KCP takes a piece now, and less than a segment waits (a partial
	// piece held back while the window was full): it leads this frame's
	// first piece, and only what KCP cannot take is copied.
	s.directBufs = s.queue.drainTo(s.directBufs[:0])
	s.directBufs = append(append(s.directBufs, s.hdr[:]), parts...)
	s.direct.reset(s.directBufs)
	sp := scratchPool.Get().(*[]byte)
	for s.direct.n > 0 && s.roomLocked(s.direct.n) {
		s.sendPieceLocked(s.direct.next(s.mss, *sp))
	}
	scratchPool.Put(sp)
	if s.direct.n > 0 {
		s.queue.push(s.direct.copyOut())
	}
	clear(s.directBufs)
}

// drainTo appends the slices q still holds to dst and empties q; they
// stay valid until the next appendFrame (which reuses the block).
func (q *sendQueue) drainTo(dst [][]byte) [][]byte {
	q.open = false
	return q.gather.drainTo(dst)
}

// drainTo appends the slices g still holds to dst and empties g.
func (g *gather) drainTo(dst [][]byte) [][]byte {
	for _, b := range g.bufs[g.head:] {
		if len(b) > 0 {
			dst = append(dst, b)
		}
	}
	clear(g.bufs)
	g.bufs, g.head, g.n = g.bufs[:0], 0, 0
	return dst
}

// scratchPool holds the buffers a piece spanning two slices is gathered
// in (a frame header and the start of its body, or queued messages):
// borrowed per call, so an idle session holds none.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, kcp.MaxSegmentData); return &b }}

// minRTOFloor and maxRTOFloor bound KCP's adaptive RTO floor (internal/kcp
// rto.go). It starts at the top, where a retransmission came 30-40 ms
// after the send before (kcp-go's no-delay floor, on a 10 ms timer tick),
// and stays there on a clean path; on a lossy one it comes down towards
// the bottom, so that a loss costs little more than a round trip.
const (
	minRTOFloor = 2 * time.Millisecond
	maxRTOFloor = 40 * time.Millisecond
)

// recvBytesPerSegment sizes the receive limit (kcp.SetRecvLimit) from
// Config.RecvWindow: what a window of small segments holds, so a session
// with large segments (pathmtu.go) holds no more bytes than one without.
const recvBytesPerSegment = 1536

func (s *session) sendPieceLocked(piece []byte) {
	s.kcp.Send(piece)
	s.handed += uint64(len(piece))
	s.pushed++
	s.segEnds.push(s.handed)
}

// queuedLocked is how many framed bytes are not yet acknowledged.
func (s *session) queuedLocked() uint64 { return s.appended - s.ackedBytes }

// idleLocked reports whether the session has nothing left to transmit.
func (s *session) idleLocked() bool {
	if s.state != stateEstablished {
		return s.state == stateDead || s.queue.n == 0
	}
	return s.queue.n == 0 && s.kcp.WaitSnd() == 0
}

// roomLocked reports whether KCP takes another piece of the n bytes
// waiting: a full segment while its queue holds less than two send windows,
// a partial one only while the window could send it now. A partial piece
// that would wait inside KCP as a segment of its own waits in s.queue
// instead, where what follows joins it: a stream of small messages to a
// peer whose window is full leaves in full segments.
func (s *session) roomLocked(n int) bool {
	w := s.kcp.WaitSnd()
	return w < 2*s.t.cfg.SendWindow && (n >= s.mss || w < s.kcp.SendWindow())
}

// pushLocked hands queued bytes to KCP in segment-sized pieces while KCP's
// queue has room, so small messages share segments under load.
func (s *session) pushLocked() bool {
	if s.queue.n == 0 || !s.roomLocked(s.queue.n) {
		return false
	}
	sp := scratchPool.Get().(*[]byte)
	for s.queue.n > 0 && s.roomLocked(s.queue.n) {
		s.sendPieceLocked(s.queue.next(s.mss, *sp))
	}
	scratchPool.Put(sp)
	return true
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
	n := 0
	for n < len(s.tracked) && s.tracked[n].end <= s.ackedBytes {
		s.fire = append(s.fire, firing{done: s.tracked[n].done})
		n++
	}
	if n > 0 {
		rest := copy(s.tracked, s.tracked[n:])
		clear(s.tracked[rest:])
		s.tracked = s.tracked[:rest]
	}
	return true
}

// dieLocked marks the session dead and records why.
func (s *session) dieLocked(reason error) {
	if s.kcp != nil {
		s.ackLocked()
	}
	s.state = stateDead
	s.ping.Store(nil)
	s.dropHeldLocked()
	s.err = &PeerError{Addr: s.addr, Reason: reason, Unacked: s.msgEnds.len()}
	for _, m := range s.tracked {
		s.fire = append(s.fire, firing{m.done, s.err})
	}
	s.tracked = nil
	s.kcp = nil
	s.queue, s.direct, s.directBufs = sendQueue{}, gather{}, nil
	s.segEnds, s.msgEnds = fifo{}, fifo{}
	if !s.delivering {
		s.dec = frameDecoder{} // else the deliverer drops it (finishDelivery)
	}
	s.changed.broadcast()
}

// tick runs the retransmission timer; it reports whether the session is
// idle and can leave the active set. A session whose lock is busy (its
// holder flushes anyway, or decodes a large message) is left for the next
// tick, so that the timer goes on to the sweep (keepalives).
func (s *session) tick() (idle bool, due int64) {
	if !s.mu.TryLock() {
		return false, 0
	}
	if s.state == stateEstablished {
		if s.kcp.ResendDue() && !s.resendWaited && s.t.readBehind() {
			// Acknowledgements may wait unread (this process was short
			// of CPU): give the read loop a turn before sending again,
			// once per due retransmission.
			s.resendWaited = true
			s.mu.Unlock()
			return false, s.t.now() + int64(time.Millisecond)
		}
		s.resendWaited = false
		s.pushLocked()
		if s.ackLocked() {
			s.progressLocked(s.t.now())
			s.changed.broadcast()
		}
	}
	idle = s.idleLocked()
	if idle {
		s.active = false
		s.queue.release()
	}
	s.flushUnlock(kcp.IKCP_FLUSH_FULL, false)
	return idle, s.timerDue.Load()
}
