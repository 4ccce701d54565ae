package rudp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

// SendOptions tunes SendMsg.
type SendOptions struct {
	// NoWait makes SendMsg return ErrWouldBlock instead of waiting for
	// room in the peer's queue.
	NoWait bool
	// AckNow asks the receiver to acknowledge the message at once
	// instead of waiting briefly for data to carry the acknowledgement.
	AckNow bool
	// Done, if set, hears about delivery: Done(nil) once the peer's
	// transport acknowledged the whole message, which it does once its
	// OnMessage returned for it (or, while it has the session paused,
	// once the message waits in its transport), or Done(err) with the
	// session's *PeerError if the session dies first. It runs exactly
	// once, on a transport goroutine (it must not block), and not at all
	// if SendMsg returns an error.
	Done func(error)
	// Later leaves a small message to the session's flusher goroutine
	// instead of flushing it on the caller's goroutine, so that messages
	// queued meanwhile share its packets: for a sender that goes on to
	// other peers at once (a publish to many nodes).
	Later bool
}

// SendMsg queues header+body as one reliable message to a peer, dialing it
// if needed (header at most MaxHeaderSize bytes, body at most
// MaxMessageSize). Messages to one peer arrive in order, each exactly once,
// or the session dies and OnPeerDown says how many were not acknowledged.
//
// While the peer's queue holds more than Config.MaxQueued bytes, SendMsg
// waits for room, or returns ErrWouldBlock at once with o.NoWait. A non-nil
// ctx that ends while it waits makes it return an error wrapping ctx.Err().
// In both cases nothing was queued.
func (t *Transport) SendMsg(ctx context.Context, to netip.AddrPort, kind byte, header, body []byte, o SendOptions) error {
	if err := checkHeaderBody(header, body); err != nil {
		return err
	}
	return t.send(ctx, to, kind, len(header)+len(body), [][]byte{header, body}, o)
}

// Send queues one reliable message (the concatenation of parts, at most
// MaxMessageSize bytes); see SendMsg. It waits while the peer's queue
// holds more than Config.MaxQueued bytes.
func (t *Transport) Send(to netip.AddrPort, kind byte, parts ...[]byte) error {
	size, err := messageSize(parts)
	if err != nil {
		return err
	}
	return t.send(context.Background(), to, kind, size, parts, SendOptions{})
}

// SendWithHeader is SendMsg with no options and no context.
func (t *Transport) SendWithHeader(to netip.AddrPort, kind byte, header, body []byte) error {
	return t.SendMsg(context.Background(), to, kind, header, body, SendOptions{})
}

// SendTracked is SendMsg with SendOptions.Done set to done.
func (t *Transport) SendTracked(to netip.AddrPort, kind byte, header, body []byte, done func(error)) error {
	return t.SendMsg(context.Background(), to, kind, header, body, SendOptions{Done: done})
}

// SendAckNow is SendMsg with SendOptions.AckNow.
func (t *Transport) SendAckNow(to netip.AddrPort, kind byte, header, body []byte) error {
	return t.SendMsg(context.Background(), to, kind, header, body, SendOptions{AckNow: true})
}

func messageSize(parts [][]byte) (int, error) {
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	if size > MaxMessageSize {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, MaxMessageSize)
	}
	return size, nil
}

func checkHeaderBody(header, body []byte) error {
	if len(header) > MaxHeaderSize {
		return fmt.Errorf("%w: header of %d bytes, limit %d", ErrTooLarge, len(header), MaxHeaderSize)
	}
	if len(body) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), MaxMessageSize)
	}
	return nil
}

func checkAddr(to netip.AddrPort) error {
	if !to.IsValid() || to.Port() == 0 {
		return fmt.Errorf("%w: %q (want ip:port with a port in 1..65535)", ErrInvalidAddr, to)
	}
	return nil
}

func (t *Transport) send(ctx context.Context, to netip.AddrPort, kind byte, size int, parts [][]byte, o SendOptions) error {
	for attempt := 0; ; attempt++ {
		s, err := t.session(to)
		if err != nil {
			return err
		}
		err = t.enqueue(ctx, s, kind, size, parts, o)
		if err == errSessionGone && attempt == 0 {
			continue // it died before this message joined it: dial again
		}
		if err == errSessionGone {
			err = s.err
		}
		return err
	}
}

var errSessionGone = errors.New("session gone")

func (t *Transport) enqueue(ctx context.Context, s *session, kind byte, size int, parts [][]byte, o SendOptions) error {
	s.mu.Lock()
	waited := false
	for {
		if s.state == stateDead {
			err := error(s.err)
			if !waited {
				err = errSessionGone
			}
			s.mu.Unlock()
			return err
		}
		if t.closing.Load() {
			s.mu.Unlock()
			return ErrClosed
		}
		q := s.queuedLocked()
		if q == 0 || q+uint64(size) <= uint64(t.cfg.MaxQueued) {
			break
		}
		if o.NoWait {
			s.mu.Unlock()
			return fmt.Errorf("%w: %s has %d bytes queued, limit %d", ErrWouldBlock, s.addr, q, t.cfg.MaxQueued)
		}
		ch := s.changed.wait()
		s.mu.Unlock()
		var ctxDone <-chan struct{}
		if ctx != nil {
			ctxDone = ctx.Done()
		}
		select {
		case <-ch:
		case <-t.done:
			return ErrClosed
		case <-ctxDone:
			return fmt.Errorf("rudp: send to %s waiting for queue room: %w", s.addr, ctx.Err())
		}
		waited = true
		s.mu.Lock()
	}
	now := t.now()
	if s.queuedLocked() == 0 {
		s.progressLocked(now) // progress is measured from the first byte in flight
	}
	established := s.state == stateEstablished
	hot := established && !s.corked && !s.flushing && size < t.kcpMSS && (o.Later || now-s.sendFlushAt < int64(hotWindow))
	// A small message that a flush soon after will carry (the flusher's,
	// the deliverer's after a corked burst, or the next round of a
	// goroutine flushing now) waits in the queue for it, sharing segments.
	later := size < t.kcpMSS && (hot || s.corked || established && s.flushing)
	s.enqueueLocked(kind, size, parts, o.Done != nil || o.AckNow, later)
	if o.Done != nil {
		s.tracked = append(s.tracked, trackedMsg{end: s.appended, done: o.Done})
	}
	activate := !s.active
	s.active = true
	if s.corked {
		s.mu.Unlock() // the deliverer flushes after its burst (deliverFrames)
	} else if hot {
		// A stream of small sends: let the flusher goroutine send what
		// accumulates, in full packets, while this sender goes on.
		queue := !s.queuedFlush
		s.queuedFlush = true
		s.mu.Unlock()
		if queue {
			t.queueFlush(s)
		}
	} else {
		// Yield to other senders only while sends come close together:
		// an RPC at a time has nobody to wait for.
		yield := now-s.sendFlushAt < int64(yieldWindow)
		s.sendFlushAt = now
		s.flushUnlock(kcp.IKCP_FLUSH_FULL, yield)
	}
	if activate {
		t.activate(s)
	}
	return nil
}
