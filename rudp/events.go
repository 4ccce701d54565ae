package rudp

import (
	"net/netip"
	"sync"
)

// OnPeerUp, OnPeerDown and the delivery of messages held back by Pause run
// on the transport's event goroutine, in the order they happened, never on
// the read, timer or flush goroutines. The queue is bounded by the number
// of sessions: each comes up once, dies once, and has at most one resume
// pending.

type eventKind uint8

const (
	evUp eventKind = iota
	evDown
	evResume
)

type event struct {
	kind eventKind
	s    *session
	addr netip.AddrPort
	inc  uint64
	err  error
}

type eventQueue struct {
	mu   sync.Mutex
	q    []event
	wake chan struct{}
}

func (t *Transport) postEvent(e event) {
	t.ev.mu.Lock()
	t.ev.q = append(t.ev.q, e)
	t.ev.mu.Unlock()
	select {
	case t.ev.wake <- struct{}{}:
	default:
	}
}

// eventLoop runs the queued events; once the transport is closing it runs
// what is left and returns.
func (t *Transport) eventLoop() {
	defer t.wg.Done()
	var batch []event
	var frames []frame
	for {
		t.ev.mu.Lock()
		batch, t.ev.q = t.ev.q, batch[:0]
		t.ev.mu.Unlock()
		for i, e := range batch {
			switch e.kind {
			case evUp:
				if t.cfg.OnPeerUp != nil {
					t.cfg.OnPeerUp(e.addr, e.inc)
				}
			case evDown:
				if t.cfg.OnPeerDown != nil {
					t.cfg.OnPeerDown(e.addr, e.err)
				}
			case evResume:
				frames = t.deliverResumed(e.s, frames)
			}
			batch[i] = event{}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-t.ev.wake:
		case <-t.done:
			t.ev.mu.Lock()
			empty := len(t.ev.q) == 0
			t.ev.mu.Unlock()
			if empty {
				return
			}
		}
	}
}
