package mesh

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
)

// maxStreamCtl bounds the goroutines sending stream control frames on
// behalf of the read goroutine (ends, answers to a waiting writer); past
// it such a frame is dropped (the peer's stream then ends by its context,
// or when this node or the session goes away).
const maxStreamCtl = 256

// listenScan binds a node's transport; the end-to-end tests swap it in
// their node processes to lose packets.
var listenScan = rudp.ListenScan

// streamPeerBudget bounds the bytes a node holds, received and not yet
// read, for all streams with one peer; a message past it resets its stream.
// (Each stream is bounded by its window; this bounds many streams together.)
var streamPeerBudget int64 = 256 << 20

// maxStreamsPerPeer bounds the streams one peer may have open at this node
// (each runs a handler); past it an open is refused (a request error for
// the opener).
const maxStreamsPerPeer = 8192

// streamTable is a node's streams: the live ones, the bounds on what peers
// may hold open and unread, and the goroutines sending control frames for
// the read goroutine. Stream handlers run as the node's handlers
// (lifecycle), so Shutdown waits for them.
type streamTable struct {
	b        *base
	life     *lifecycle
	names    *peerNames
	strict   *strictCheck
	handlers *registry
	nextID   atomic.Uint64 // stream IDs this node opens
	// drain, set by New: the drain notice this node sends when it
	// refuses a stream while draining, and what to do with one heard.
	drainNotice func() []byte
	drainHeard  func(from netip.AddrPort, p []byte)

	mu     sync.Mutex
	m      map[streamKey]*Stream
	heldBy map[netip.AddrPort]*atomic.Int64 // unread bytes per peer, for streamPeerBudget
	served map[netip.AddrPort]int           // streams each peer opened here, for maxStreamsPerPeer
	closed bool

	ctlMu     sync.Mutex
	ctlN      int
	ctlClosed bool
	ctlWG     sync.WaitGroup

	unknown atomic.Uint64 // frames for streams that had ended here

	// window is the message window this node takes per stream direction:
	// StreamWindowMessages when its transport announces
	// featureStreamWindow, else streamWindowV1 (as a node before it).
	window uint64
}

func newStreamTable(b *base, life *lifecycle, names *peerNames, strict *strictCheck, handlers *registry) *streamTable {
	return &streamTable{b: b, life: life, names: names, strict: strict, handlers: handlers, window: StreamWindowMessages}
}

// add enters a stream; it refuses one a peer opens past maxStreamsPerPeer.
func (t *streamTable) add(s *Stream) (dup, closed, full bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false, true, false
	}
	if t.m == nil {
		t.m = make(map[streamKey]*Stream)
	}
	if t.served == nil {
		t.served = make(map[netip.AddrPort]int)
	}
	if _, ok := t.m[s.key]; ok {
		return true, false, false
	}
	if !s.key.opened {
		if t.served[s.key.peer] >= maxStreamsPerPeer {
			return false, false, true
		}
		t.served[s.key.peer]++
	}
	t.m[s.key] = s
	return false, false, false
}

// held returns the counter of unread stream bytes from peer.
func (t *streamTable) held(peer netip.AddrPort) *atomic.Int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.heldBy == nil {
		t.heldBy = make(map[netip.AddrPort]*atomic.Int64)
	}
	h := t.heldBy[peer]
	if h == nil {
		h = new(atomic.Int64)
		t.heldBy[peer] = h
	}
	return h
}

func (t *streamTable) get(k streamKey) *Stream {
	t.mu.Lock()
	s := t.m[k]
	t.mu.Unlock()
	return s
}

func (t *streamTable) remove(s *Stream) {
	t.mu.Lock()
	if t.m[s.key] == s {
		delete(t.m, s.key)
		if c := t.served[s.key.peer]; !s.key.opened && c > 1 {
			t.served[s.key.peer] = c - 1
		} else if !s.key.opened {
			delete(t.served, s.key.peer)
		}
	}
	t.mu.Unlock()
}

// take removes and returns the streams with peer (every stream if all).
func (t *streamTable) take(peer netip.AddrPort, all bool) []*Stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Stream
	for k, s := range t.m {
		if all || k.peer == peer {
			out = append(out, s)
			delete(t.m, k)
		}
	}
	if all {
		t.heldBy, t.served = nil, nil
	} else {
		delete(t.heldBy, peer) // a new session starts new counts
		delete(t.served, peer)
	}
	return out
}

// HandleStream sets the handler of streams opened with command ID cmd
// (stream IDs are a table of their own, apart from RPC and command IDs).
// It runs on a goroutine of its own per stream; s.Recv returns the opener's
// first message (if it gave one) and then the rest. The stream ends when
// the handler returns: with nil, the opener's Recv returns io.EOF after the
// handler's last message; with an error, the opener's Recv returns it as a
// *RemoteError (IsRequestError). ctx is cancelled when the opener cancels
// or closes the stream, its deadline passes, the opener's node dies, or
// this node shuts down. A second handler for one ID is refused (the first
// stays) and IsCommandDuplicate reports it.
func (n *Node) HandleStream(cmd uint16, h func(ctx context.Context, s *Stream) error) {
	n.handlers.addStream(cmd, h)
}

// OpenStream opens a stream to the HandleStream handler of cmd on the node
// at addr and returns at once, without a round trip. first, if not nil, is
// the first message the handler receives (it counts against the window
// like any other). ctx bounds the whole stream: its deadline travels to
// the handler, and cancelling it ends the stream on both sides (this
// side's Send and Recv return a request error, the handler's context is
// cancelled). A missing handler shows as a request error from Recv.
// Errors from OpenStream itself: IsSendError (bad address, first too
// large, node shut down, unreachable), IsUnhealthyError, or the context's.
func (n *Node) OpenStream(ctx context.Context, cmd uint16, addr string, first []byte) (*Stream, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if n.life.closed.Load() {
		return nil, sendErr(addr, ErrClosed)
	}
	if !n.IsPartOfCluster() {
		return nil, fmt.Errorf("%w: stream %d to %s refused", ErrUnhealthy, cmd, addr)
	}
	return n.streams.open(ctx, cmd, addr, first)
}

// open is OpenStream once the node is known to serve.
func (t *streamTable) open(ctx context.Context, cmd uint16, addr string, first []byte) (*Stream, error) {
	to, err := resolve(addr)
	if err != nil {
		return nil, sendErr(addr, err)
	}
	if len(first) > MaxMessageSize {
		return nil, sendErr(addr, fmt.Errorf("%w: first message of %d bytes, limit %d", rudp.ErrTooLarge, len(first), MaxMessageSize))
	}
	o := streamOpen{sid: t.nextID.Add(1), cmd: cmd}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, timeoutErr(cmd, addr, context.DeadlineExceeded)
		}
		o.timeoutMs = uint32(min(max(left.Milliseconds(), 1), math.MaxUint32))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: stream %d to %s: %w", ErrRequest, cmd, addr, err)
	}
	s := newStream(t, streamKey{peer: to, sid: o.sid, opened: true}, cmd, ctx)
	if first != nil {
		o.flags = streamFlagFirst
		s.sentMsgs, s.sentBytes = 1, uint64(len(first))
	}
	var tc *trace.SpanContext
	if tr := t.b.tracing.get(); tr != nil {
		_, s.span = startSpan(ctx, tr, nil, trace.SpanKindClient, "Stream", cmd, addr)
		tc = carried(s.span)
	}
	if _, closed, _ := t.add(s); closed {
		if s.span != nil {
			endSpan(s.span, ErrClosed)
		}
		return nil, sendErr(addr, ErrClosed)
	}
	var hdr [streamOpenHeaderSize]byte
	if err := t.transmitOpen(ctx, to, appendStreamOpen(hdr[:0], o), first, tc); err != nil {
		err = sendErr(addr, err)
		s.finish(err, true)
		return nil, err
	}
	// Watch the context only now: an end frame must not overtake the open.
	stop := context.AfterFunc(ctx, s.contextDone)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		stop()
	} else {
		s.stopWatch = stop
		s.mu.Unlock()
	}
	return s, nil
}

// transmit sends one stream frame: to this node directly (the body
// is copied, as the transport would), else on the reliable session. While
// the peer's queue is full it waits, until ctx (if not nil) ends.
func (t *streamTable) transmit(ctx context.Context, to netip.AddrPort, kind byte, hdr, body []byte) error {
	if to == t.b.self {
		if t.life.closed.Load() {
			return ErrClosed
		}
		p := make([]byte, 0, len(hdr)+len(body))
		t.handleFrame(to, kind, append(append(p, hdr...), body...), true)
		return nil
	}
	return t.b.tr.SendMsg(ctx, to, kind, hdr, body, rudp.SendOptions{})
}

// transmitOpen is transmit for an open frame, with the trace context tc
// if not nil.
func (t *streamTable) transmitOpen(ctx context.Context, to netip.AddrPort, hdr, first []byte, tc *trace.SpanContext) error {
	switch {
	case tc == nil:
		return t.transmit(ctx, to, kindStreamOpen, hdr, first)
	case to == t.b.self:
		if t.life.closed.Load() {
			return ErrClosed
		}
		p := make([]byte, 0, len(hdr)+len(first))
		t.accept(to, append(append(p, hdr...), first...), tc)
		return nil
	}
	return t.b.tr.SendMsg(ctx, to, kindBatch, tracedHeader(tc, kindStreamOpen, hdr, len(first)), first, rudp.SendOptions{})
}

// ctl sends a control frame (already complete: header and body) for
// the read goroutine, which must not wait: at once if the peer's queue has
// room, else from a goroutine of its own.
func (t *streamTable) ctl(to netip.AddrPort, kind byte, frame []byte) {
	if to != t.b.self {
		err := t.b.tr.SendMsg(context.Background(), to, kind, frame, nil, rudp.SendOptions{NoWait: true})
		if !errors.Is(err, rudp.ErrWouldBlock) {
			if err != nil {
				t.b.log.Debug("mesh: stream control frame not sent", "to", to, "err", err)
			}
			return
		}
	}
	t.ctlMu.Lock()
	if t.ctlClosed || t.ctlN >= maxStreamCtl {
		t.ctlMu.Unlock()
		t.b.warnOnce("mesh: stream control frame dropped (too many pending)", "to", to)
		return
	}
	t.ctlN++
	t.ctlWG.Add(1)
	t.ctlMu.Unlock()
	go func() {
		defer func() {
			t.ctlMu.Lock()
			t.ctlN--
			t.ctlMu.Unlock()
			t.ctlWG.Done()
		}()
		if err := t.transmit(context.Background(), to, kind, frame, nil); err != nil {
			t.b.log.Debug("mesh: stream control frame not sent", "to", to, "err", err)
		}
	}()
}

// handleFrame takes every stream frame (read goroutine: it queues,
// wakes and returns; it never runs user code or waits).
func (t *streamTable) handleFrame(from netip.AddrPort, kind byte, p []byte, reliable bool) {
	if !reliable {
		t.b.bad("unreliable stream frame", from)
		return
	}
	if kind == kindStreamOpen {
		t.accept(from, p, nil)
		return
	}
	sid, dir, rest, err := parseStreamHeader(p)
	if err != nil {
		t.b.bad("malformed stream frame", from)
		return
	}
	s := t.get(streamKey{peer: from, sid: sid, opened: dir == dirFromAcceptor})
	if s == nil {
		t.unknown.Add(1) // it ended here; the peer hears or heard why
		return
	}
	switch kind {
	case kindStreamData:
		s.onData(rest)
	case kindStreamGrant:
		msgs, bytes, err := parseStreamGrant(rest)
		if err != nil {
			t.b.bad("malformed stream grant", from)
			return
		}
		s.onGrant(msgs, bytes)
	case kindStreamEOF:
		s.onEOF()
	case kindStreamEnd:
		status, text, err := parseStreamEnd(rest)
		if err != nil {
			t.b.bad("malformed stream end", from)
			return
		}
		if notice, ok := parseDrainingRefusal(text); ok && status == endRefused {
			t.drainHeard(from, notice)
		}
		s.onEnd(status, text)
	case kindStreamWant:
		s.onWant()
	default:
		t.b.bad(fmt.Sprintf("unknown stream message kind %#x", kind), from)
	}
}

// handleOpen takes an open frame that came with the trace context tc.
func (t *streamTable) handleOpen(from netip.AddrPort, p []byte, reliable bool, tc *trace.SpanContext) {
	if !reliable {
		t.b.bad("unreliable stream frame", from)
		return
	}
	t.accept(from, p, tc)
}

// accept starts the handler of a stream a peer opened (read goroutine);
// tc is the opener's trace context, if it sent one.
func (t *streamTable) accept(from netip.AddrPort, p []byte, tc *trace.SpanContext) {
	o, first, err := parseStreamOpen(p)
	if err != nil {
		t.b.bad("malformed stream open", from)
		return
	}
	if t.strict.drop(from) {
		return
	}
	refuse := func(status byte, text string) {
		frame := append(appendStreamHeader(nil, o.sid, dirFromAcceptor), status)
		t.ctl(from, kindStreamEnd, append(frame, text...))
	}
	h, ok := t.handlers.getStream(o.cmd)
	if !ok {
		refuse(endNoHandler, fmt.Sprintf("no stream handler for command %d", o.cmd))
		return
	}
	if t.life.draining.Load() {
		// The opener lists this node draining at once.
		refuse(endRefused, drainingRefusal+hex.EncodeToString(t.drainNotice()))
		return
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if o.timeoutMs > 0 {
		ctx, cancel = context.WithTimeout(t.life.ctx, time.Duration(o.timeoutMs)*time.Millisecond)
	} else {
		ctx, cancel = context.WithCancel(t.life.ctx)
	}
	var span trace.Span
	if tr := t.b.tracing.get(); tr != nil {
		ctx, span = startSpan(ctx, tr, tc, trace.SpanKindServer, "Stream", o.cmd, t.names.name(from))
	}
	s := newStream(t, streamKey{peer: from, sid: o.sid}, o.cmd, ctx)
	s.cancel = cancel
	s.span = span
	if o.flags&streamFlagFirst != 0 {
		if s.peerHeld.Add(int64(len(first))) > streamPeerBudget {
			s.peerHeld.Add(-int64(len(first)))
			cancel()
			t.b.warnOnce("mesh: stream refused: its peer's streams hold too many unread bytes", "from", from, "limit", streamPeerBudget)
			refuse(endReset, fmt.Sprintf("the receiver holds more than %d unread bytes for streams with this node", streamPeerBudget))
			return
		}
		s.rq = append(s.rq, first)
		s.rqBytes = len(first)
	}
	dup, closed, full := t.add(s)
	if dup || closed || full {
		if span != nil {
			endSpan(span, errors.New("stream refused"))
		}
		cancel()
		s.mu.Lock()
		s.dropQueueLocked()
		s.mu.Unlock()
	}
	switch {
	case dup:
		t.b.bad("stream opened twice", from)
		return
	case closed:
		refuse(endRefused, "node is shutting down")
		return
	case full:
		t.b.warnOnce("mesh: stream refused: too many from one peer", "from", from, "limit", maxStreamsPerPeer)
		refuse(endRefused, fmt.Sprintf("more than %d streams open from this node", maxStreamsPerPeer))
		return
	}
	if !t.life.start(func() { s.serve(h) }) {
		if span != nil {
			endSpan(span, ErrClosed)
		}
		s.endAsync(sendErr(s.addr, ErrClosed), endRefused, "node is shutting down")
		return
	}
}

// serve runs the handler of an accepted stream and ends the stream with
// its result.
func (s *Stream) serve(h streamHandler) {
	stop := context.AfterFunc(s.ctx, s.contextDone)
	defer stop()
	var err error
	if s.span != nil {
		defer func() { endSpan(s.span, err) }()
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.t.b.log.Error("mesh: stream handler panicked", "cmd", s.cmd, "panic", r)
				err = fmt.Errorf("handler panicked: %v", r)
			}
		}()
		err = h(s.ctx, s)
	}()
	done := fmt.Errorf("%w: the handler of stream %d has returned", ErrStreamClosed, s.cmd)
	switch {
	case err == nil:
		s.end(done, true, true, endOK, "")
	case context.Cause(s.ctx) == context.DeadlineExceeded:
		s.end(done, true, true, endTimeout, "the stream's deadline passed")
	default:
		s.end(done, true, true, endError, err.Error())
	}
}

// peerDown ends every stream with a peer whose session died (on a
// transport goroutine: it does not wait).
func (t *streamTable) peerDown(addr netip.AddrPort, cause error) {
	for _, s := range t.take(addr, false) {
		s.finish(sendErr(s.addr, cause), false)
	}
}

// close ends every stream at Shutdown and refuses new ones.
func (t *streamTable) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	for _, s := range t.take(netip.AddrPort{}, true) {
		s.finish(sendErr(s.addr, ErrClosed), true)
	}
}

// waitCtl waits for the control-frame goroutines (after the
// transport closed, so none of them waits on it).
func (t *streamTable) waitCtl() {
	t.ctlMu.Lock()
	t.ctlClosed = true
	t.ctlMu.Unlock()
	t.ctlWG.Wait()
}

func appendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
