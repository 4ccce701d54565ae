package mesh

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// sender sends reliable messages for goroutines that may wait for room in
// a full peer queue only within a bound (bounded), or not at all (soon:
// a bounded number of hand-off goroutines wait instead).
type sender struct {
	b        *base
	life     *lifecycle
	handoffs atomic.Int64
	drops    atomic.Uint64 // messages dropped: too many hand-offs waiting
}

// maxHandoffs bounds the messages waiting, each on a goroutine, for room
// in a full peer queue on behalf of a goroutine that must not wait.
const maxHandoffs = 256

// bounded sends a reliable message, waiting for room in a full peer
// queue only until deadline (zero: no deadline) or Shutdown.
func (s *sender) bounded(to netip.AddrPort, kind byte, hdr, body []byte, o rudp.SendOptions, deadline time.Time) error {
	o.NoWait = true
	err := s.b.tr.SendMsg(context.Background(), to, kind, hdr, body, o)
	if !errors.Is(err, rudp.ErrWouldBlock) {
		return err
	}
	ctx, cancel := s.life.ctx, context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(s.life.ctx, deadline)
	}
	defer cancel()
	o.NoWait = false
	return s.b.tr.SendMsg(ctx, to, kind, hdr, body, o)
}

// soon sends a reliable message without ever waiting (for the read
// goroutine): if the peer's queue is full, a goroutine (at most
// maxHandoffs at once, else the message is dropped and counted) waits for
// room until deadline.
func (s *sender) soon(to netip.AddrPort, kind byte, hdr, body []byte, o rudp.SendOptions, deadline time.Time) {
	o.NoWait = true
	err := s.b.tr.SendMsg(context.Background(), to, kind, hdr, body, o)
	if err == nil {
		return
	}
	if !errors.Is(err, rudp.ErrWouldBlock) {
		s.b.log.Debug("mesh: reply not sent", "to", to, "kind", kind, "err", err)
		return
	}
	if s.handoffs.Add(1) > maxHandoffs {
		s.handoffs.Add(-1)
		s.drops.Add(1)
		s.b.warnOnce("mesh: peer queue full and too many replies waiting, reply dropped", "to", to, "limit", maxHandoffs)
		return
	}
	hdr = append([]byte(nil), hdr...) // the caller's header may be on its stack
	ok := s.life.start(func() {
		defer s.handoffs.Add(-1)
		if err := s.bounded(to, kind, hdr, body, o, deadline); err != nil {
			s.b.log.Debug("mesh: reply not sent", "to", to, "kind", kind, "err", err)
		}
	})
	if !ok {
		s.handoffs.Add(-1)
	}
}
