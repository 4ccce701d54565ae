package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
)

// Flow control of one stream: a writer may have at most this many
// messages, and this many bytes, sent and not yet consumed by the reading
// side's Recv. A message always fits when nothing is in flight, so a
// message up to MaxMessageSize is never refused for its size. The reader
// grants credit as it consumes (after about half a window, or at once when
// the writer waits), so a slow reader holds up only its own stream's writer.
//
// Nodes before this revision allow 256 messages (streamWindowV1) and
// refuse more: a writer uses StreamWindowMessages only towards a peer
// whose transport CAPS carry featureStreamWindow, and grants a peer
// without it every streamWindowV1/2 messages.
const (
	StreamWindowMessages = 1024
	StreamWindowBytes    = 4 << 20
)

// streamWindowV1 is the message window of nodes without featureStreamWindow.
const streamWindowV1 = 256

// featureStreamWindow, in the transport's Config.Features, says that this
// node takes StreamWindowMessages per stream direction.
const featureStreamWindow uint32 = 1 << 0

// ErrStreamClosed: Send or CloseSend on a stream this side closed (Close,
// CloseSend) or whose handler has returned.
var ErrStreamClosed = errors.New("mesh: stream closed")

// Stream is one two-way stream between an OpenStream caller (the opener)
// and a HandleStream handler on another node (or the same one). Messages
// arrive in order, exactly once, with their boundaries; they are reliable.
//
// Send and CloseSend may be called from several goroutines (they are
// serialised), Recv too, and Send and Recv run concurrently. Every method
// is safe to call after the stream ended.
type Stream struct {
	t    *streamTable
	key  streamKey
	addr string
	cmd  uint16
	dir  byte // dir of the frames this side sends
	ctx  context.Context
	// cancel ends the handler's context (acceptor only).
	cancel context.CancelFunc

	sendMu sync.Mutex // serialises Send and CloseSend, so frames keep their order

	mu sync.Mutex
	// Receive side.
	rq            [][]byte // received, not consumed; rq[rqHead:] is live
	rqHead        int
	rqBytes       int
	peerHeld      *atomic.Int64 // bytes held for all streams with the peer (see streamPeerBudget)
	consumedMsgs  uint64
	consumedBytes uint64
	grantedMsgs   uint64 // last consumed counts reported to the writer
	grantedBytes  uint64
	peerWants     bool // the writer waits for credit
	recvEOF       bool // the peer called CloseSend (or its handler returned)
	recvWake      chan struct{}
	// Send side.
	sentMsgs    uint64
	sentBytes   uint64
	creditMsgs  uint64 // the peer's consumed counts as last granted
	peerWin     uint64 // the message window with this peer (learnWindowLocked)
	creditBytes uint64
	wantSent    bool
	sendClosed  bool
	sendWake    chan struct{}
	// End.
	ended     bool
	endErr    error // returned by Send at once, and by Recv (see endLocal)
	endLocal  bool  // ended by this side: Recv returns endErr at once, else after the queue
	stopWatch func() bool
	done      chan struct{}
	span      trace.Span // tracing on: the opener's until the end, the handler's while it runs
}

// streamKey names a stream on one node: opened is true on the node that
// opened it.
type streamKey struct {
	peer   netip.AddrPort
	sid    uint64
	opened bool
}

func newStream(t *streamTable, key streamKey, cmd uint16, ctx context.Context) *Stream {
	s := &Stream{
		t: t, key: key, addr: t.names.name(key.peer), cmd: cmd, ctx: ctx,
		peerHeld: t.held(key.peer),
		recvWake: make(chan struct{}, 1),
		sendWake: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	s.learnWindowLocked() // not shared yet
	if key.opened {
		s.dir = dirFromOpener
	} else {
		s.dir = dirFromAcceptor
	}
	return s
}

// Addr returns the mesh address of the node at the other end.
func (s *Stream) Addr() string { return s.addr }

// Command returns the stream's command ID.
func (s *Stream) Command() uint16 { return s.cmd }

// Context returns the stream's context: the opener's context on the
// opening side, the handler's context on the handling side.
func (s *Stream) Context() context.Context { return s.ctx }

// Done is closed when the stream has ended (both sides finished, either
// side cancelled or closed it, or the peer died).
func (s *Stream) Done() <-chan struct{} { return s.done }

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Send sends one message (0 bytes up to MaxMessageSize) to the other end.
// It waits while the stream's window is full (the other end reads slower
// than this one writes) and returns once the message is queued. After the
// stream ended it returns the reason: IsRequestError if the other end's
// handler failed or a side cancelled, IsSendError if the peer died,
// ErrStreamClosed after CloseSend, Close or the handler's return.
func (s *Stream) Send(p []byte) error {
	if len(p) > MaxMessageSize {
		return sendErr(s.addr, fmt.Errorf("%w: stream message of %d bytes, limit %d", rudp.ErrTooLarge, len(p), MaxMessageSize))
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	for {
		s.mu.Lock()
		if s.ended {
			err := s.sendErrLocked()
			s.mu.Unlock()
			return err
		}
		if s.sendClosed {
			s.mu.Unlock()
			return fmt.Errorf("%w: Send after CloseSend", ErrStreamClosed)
		}
		inMsgs, inBytes := s.sentMsgs-s.creditMsgs, s.sentBytes-s.creditBytes
		if inMsgs >= s.peerWin {
			s.learnWindowLocked() // the peer's CAPS may have come since
		}
		if inMsgs < s.peerWin && (inBytes == 0 || inBytes+uint64(len(p)) <= StreamWindowBytes) {
			s.sentMsgs++
			s.sentBytes += uint64(len(p))
			s.mu.Unlock()
			return s.transmit(kindStreamData, nil, p)
		}
		want := !s.wantSent
		s.wantSent = true
		s.mu.Unlock()
		if want {
			if err := s.transmit(kindStreamWant, nil, nil); err != nil {
				return err
			}
		}
		select {
		case <-s.sendWake:
		case <-s.done:
		}
	}
}

// sendErrLocked is what Send returns on an ended stream.
func (s *Stream) sendErrLocked() error {
	if s.endErr == io.EOF {
		return fmt.Errorf("%w: the handler of stream %d on %s has returned", ErrStreamClosed, s.cmd, s.addr)
	}
	return s.endErr
}

// transmit sends one frame of this stream, waiting for room in the peer's
// queue until the stream's context ends; a failure ends the stream.
func (s *Stream) transmit(kind byte, extra, body []byte) error {
	var buf [streamGrantSize]byte
	hdr := append(appendStreamHeader(buf[:0], s.key.sid, s.dir), extra...)
	err := s.t.transmit(s.ctx, s.key.peer, kind, hdr, body)
	if err == nil {
		return nil
	}
	if s.ctx.Err() != nil {
		s.contextDone()
	} else {
		s.end(sendErr(s.addr, err), true, false, 0, "")
	}
	s.mu.Lock()
	err = s.endErr
	s.mu.Unlock()
	return err
}

// Recv returns the next message from the other end, waiting for one. It
// returns io.EOF once the other end called CloseSend (or its handler
// returned nil) and every message before it was received. Other errors
// end the stream: IsRequestError for the handler's error (a *RemoteError
// with its message) or a cancel on either side, IsRequestTimeoutError when
// the stream's deadline passed, IsSendError when the peer died or this
// node shut down, ErrStreamClosed after Close. Messages that arrived
// before the handler returned, or before the peer died, are returned first.
func (s *Stream) Recv() ([]byte, error) {
	for {
		s.mu.Lock()
		if s.ended && s.endLocal {
			err := s.endErr
			s.mu.Unlock()
			return nil, err
		}
		if s.rqHead < len(s.rq) {
			m := s.rq[s.rqHead]
			s.rq[s.rqHead] = nil
			s.rqHead++
			if s.rqHead == len(s.rq) {
				s.rq, s.rqHead = s.rq[:0], 0
			} else {
				wake(s.recvWake) // for another Recv waiting
			}
			s.rqBytes -= len(m)
			s.peerHeld.Add(-int64(len(m)))
			s.consumedMsgs++
			s.consumedBytes += uint64(len(m))
			grant := !s.ended && s.grantDueLocked()
			var g [16]byte
			if grant {
				s.grantLocked(g[:0])
			}
			s.mu.Unlock()
			if grant {
				s.transmit(kindStreamGrant, g[:], nil) // a failure ends the stream; m is still good
			}
			return m, nil
		}
		if s.recvEOF {
			s.mu.Unlock()
			return nil, io.EOF
		}
		if s.ended {
			err := s.endErr
			s.mu.Unlock()
			return nil, err
		}
		s.mu.Unlock()
		select {
		case <-s.recvWake:
		case <-s.done:
		}
	}
}

// grantDueLocked reports whether the writer should hear how much was
// consumed: half a window since the last grant, or anything while it waits.
func (s *Stream) grantDueLocked() bool {
	msgs, bytes := s.consumedMsgs-s.grantedMsgs, s.consumedBytes-s.grantedBytes
	if msgs >= s.peerWin/2 && s.peerWin < StreamWindowMessages {
		s.learnWindowLocked()
	}
	return msgs >= s.peerWin/2 || bytes >= StreamWindowBytes/2 || (s.peerWants && msgs > 0)
}

// learnWindowLocked sets the message window both ends of the stream use:
// StreamWindowMessages with a peer whose CAPS say it takes it (or this
// node itself), else streamWindowV1. Once large it stays so.
func (s *Stream) learnWindowLocked() {
	if s.peerWin == StreamWindowMessages {
		return
	}
	s.peerWin = streamWindowV1
	if s.t.window == StreamWindowMessages &&
		(s.key.peer == s.t.b.self || s.t.b.tr.PeerFeatures(s.key.peer)&featureStreamWindow != 0) {
		s.peerWin = StreamWindowMessages
	}
}

// grantLocked records a grant of everything consumed and writes its body into b.
func (s *Stream) grantLocked(b []byte) []byte {
	s.grantedMsgs, s.grantedBytes = s.consumedMsgs, s.consumedBytes
	s.peerWants = false
	b = appendUint64(b, s.consumedMsgs)
	return appendUint64(b, s.consumedBytes)
}

// CloseSend tells the other end that no more messages follow: its Recv
// returns io.EOF after the last one. Recv keeps working on this side.
// Calling it again does nothing.
func (s *Stream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.ended {
		err := s.sendErrLocked()
		s.mu.Unlock()
		if errors.Is(err, ErrStreamClosed) {
			return nil
		}
		return err
	}
	if s.sendClosed {
		s.mu.Unlock()
		return nil
	}
	s.sendClosed = true
	s.mu.Unlock()
	return s.transmit(kindStreamEOF, nil, nil)
}

// Close ends the stream at once on both sides and releases it. If it had
// not ended yet, the other end sees a request error (its handler's context
// is cancelled, or the opener's Recv fails). Closing an ended stream does
// nothing; the opener should Close every stream it opens (a stream that
// ended on its own is released already).
func (s *Stream) Close() {
	text := "stream closed by the opener"
	if !s.key.opened {
		text = "stream closed by the handler"
	}
	err := fmt.Errorf("%w: stream %d with %s", ErrStreamClosed, s.cmd, s.addr)
	if !s.end(err, true, true, endCancelled, text) {
		s.mu.Lock()
		s.dropQueueLocked() // ended by the peer with messages left unread
		s.mu.Unlock()
	}
}

// contextDone ends the stream when its context is done: the opener's
// context, or the handler's (cancelled by Shutdown or its deadline).
func (s *Stream) contextDone() {
	cause := s.ctx.Err()
	var err error
	status, text := endCancelled, "context cancelled on the other end: "+cause.Error()
	switch {
	case errors.Is(cause, context.DeadlineExceeded):
		err = timeoutErr(s.cmd, s.addr, cause)
		status, text = endTimeout, "the stream's deadline passed"
	case !s.key.opened && s.t.life.ctx.Err() != nil:
		err = sendErr(s.addr, ErrClosed)
		status, text = endRefused, "node is shutting down"
	default:
		err = fmt.Errorf("%w: stream %d with %s: %w", ErrRequest, s.cmd, s.addr, cause)
	}
	s.end(err, true, true, status, text)
}

// end finishes the stream once and reports whether this call did. err is
// what Send returns from now on, and Recv (at once if local, else after the
// queued messages). With notify, an end frame with status and text goes to
// the peer (sent at once: end must not run on the read goroutine with
// notify; see endAsync).
func (s *Stream) end(err error, local, notify bool, status byte, text string) bool {
	if !s.finish(err, local) {
		return false
	}
	if notify {
		s.t.transmit(context.Background(), s.key.peer, kindStreamEnd, s.endFrame(status), []byte(text))
	}
	return true
}

// endAsync is end for the read goroutine: the end frame is sent by a
// goroutine of its own.
func (s *Stream) endAsync(err error, status byte, text string) {
	if s.finish(err, true) {
		s.t.ctl(s.key.peer, kindStreamEnd, append(s.endFrame(status), text...))
	}
}

func (s *Stream) endFrame(status byte) []byte {
	return append(appendStreamHeader(make([]byte, 0, streamEndHeaderSize+64), s.key.sid, s.dir), status)
}

// finish marks the stream ended, wakes its waiters and releases it; it
// never blocks.
func (s *Stream) finish(err error, local bool) bool {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return false
	}
	s.ended, s.endErr, s.endLocal = true, err, local
	if local {
		s.dropQueueLocked()
	}
	stop := s.stopWatch
	close(s.done)
	s.mu.Unlock()
	s.t.remove(s)
	if stop != nil {
		stop()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.span != nil && s.key.opened {
		if errors.Is(err, io.EOF) || errors.Is(err, ErrStreamClosed) {
			err = nil // the handler returned nil, or this side closed it
		}
		endSpan(s.span, err)
	}
	return true
}

// dropQueueLocked releases the messages not received (s.mu held).
func (s *Stream) dropQueueLocked() {
	s.peerHeld.Add(-int64(s.rqBytes))
	clear(s.rq)
	s.rq, s.rqHead, s.rqBytes = nil, 0, 0
}

// onData queues a message from the peer (read goroutine). A message past
// the window this side granted is a protocol violation, and one past the
// bytes a node holds for all streams with one peer is refused: either
// resets the stream.
func (s *Stream) onData(p []byte) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	live := len(s.rq) - s.rqHead
	if s.recvEOF || uint64(live) >= s.t.window || (s.rqBytes > 0 && s.rqBytes+len(p) > StreamWindowBytes) {
		s.mu.Unlock()
		s.t.b.bad("stream message past the window or after CloseSend", s.key.peer)
		s.endAsync(sendErr(s.addr, errors.New("the peer broke the stream's flow control")), endReset,
			fmt.Sprintf("stream message past the window (%d messages, %d bytes) or after CloseSend", s.t.window, StreamWindowBytes))
		return
	}
	if held := s.peerHeld.Add(int64(len(p))); held > streamPeerBudget {
		s.peerHeld.Add(-int64(len(p)))
		s.mu.Unlock()
		s.t.b.warnOnce("mesh: stream reset: its peer's streams hold too many unread bytes", "from", s.key.peer, "limit", streamPeerBudget)
		s.endAsync(sendErr(s.addr, fmt.Errorf("streams with the peer hold more than %d unread bytes", streamPeerBudget)), endReset,
			fmt.Sprintf("the receiver holds more than %d unread bytes for streams with this node", streamPeerBudget))
		return
	}
	s.rq = append(s.rq, p)
	s.rqBytes += len(p)
	s.mu.Unlock()
	wake(s.recvWake)
}

// onGrant takes the peer's consumed counts (read goroutine).
func (s *Stream) onGrant(msgs, bytes uint64) {
	s.mu.Lock()
	if msgs > s.sentMsgs || bytes > s.sentBytes {
		s.mu.Unlock()
		s.t.b.bad("stream grant for more than was sent", s.key.peer)
		s.endAsync(sendErr(s.addr, errors.New("the peer granted credit for messages never sent")), endReset, "credit for messages never sent")
		return
	}
	s.creditMsgs = max(s.creditMsgs, msgs)
	s.creditBytes = max(s.creditBytes, bytes)
	s.wantSent = false
	s.mu.Unlock()
	wake(s.sendWake)
}

// onWant answers a waiting writer with what was consumed, or notes that it
// waits so the next Recv answers (read goroutine).
func (s *Stream) onWant() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.peerWants = true
	if s.consumedMsgs == s.grantedMsgs {
		s.mu.Unlock()
		return
	}
	frame := s.grantLocked(appendStreamHeader(make([]byte, 0, streamGrantSize), s.key.sid, s.dir))
	s.mu.Unlock()
	s.t.ctl(s.key.peer, kindStreamGrant, frame)
}

// onEOF records the peer's CloseSend (read goroutine).
func (s *Stream) onEOF() {
	s.mu.Lock()
	s.recvEOF = true
	s.mu.Unlock()
	wake(s.recvWake)
}

// onEnd ends the stream as the peer said (read goroutine).
func (s *Stream) onEnd(status byte, text []byte) {
	var err error
	switch status {
	case endOK:
		err = io.EOF
	case endError:
		err = &RemoteError{Addr: s.addr, Cmd: s.cmd, Message: string(text)}
	case endCancelled:
		err = fmt.Errorf("%w: stream %d with %s: %s", ErrRequest, s.cmd, s.addr, text)
	case endNoHandler:
		err = fmt.Errorf("%w: no stream handler for command %d on %s", ErrRequest, s.cmd, s.addr)
	case endRefused:
		if _, draining := parseDrainingRefusal(text); draining {
			err = drainingErr(s.cmd, s.addr)
			break
		}
		err = fmt.Errorf("%w: stream %d refused by %s: %s", ErrRequest, s.cmd, s.addr, text)
	case endTimeout:
		err = timeoutErr(s.cmd, s.addr, fmt.Errorf("on the remote node: %w", context.DeadlineExceeded))
	default: // endReset
		err = sendErr(s.addr, fmt.Errorf("stream %d reset by the peer: %s", s.cmd, text))
	}
	// The handler's result comes after its messages; a cancel or reset
	// ends the stream at once.
	s.finish(err, status != endOK && status != endError)
}
