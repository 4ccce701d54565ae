package mesh

import (
	"net/netip"
	"sync"
)

// Fan-out bookkeeping: IDs seen, hops waited on, and the acknowledgements
// that answer them.

type fanKey struct {
	id   uint64
	peer netip.AddrPort
}

type fanAck struct {
	failed  []netip.AddrPort // the relay could not reach them
	refused []netip.AddrPort // the relay's view does not list them
	err     error
}

type fanoutState struct {
	mu    sync.Mutex
	waits map[fanKey]hopWait
	clock func() int64 // monotonic ns
	// De-duplication: two generations of IDs. cur takes new IDs; when it
	// is seenTTL old (or holds maxSeen IDs) it becomes prev and the old
	// prev is dropped whole, so an ID is remembered for seenTTL to
	// 2*seenTTL (less under a flood of more than maxSeen IDs per seenTTL)
	// and nothing is ever pruned entry by entry.
	cur, prev map[uint64]struct{}
	swapped   int64
}

// spreadWait is what one reliable spread waits for: an answer per hop.
// Only the last answer wakes the spreading goroutine.
type spreadWait struct {
	mu   sync.Mutex
	acks []fanAck
	got  []bool
	left int
	done chan struct{} // closed when every hop has answered
}

func newSpreadWait(hops int) *spreadWait {
	return &spreadWait{acks: make([]fanAck, hops), got: make([]bool, hops), left: hops, done: make(chan struct{})}
}

// answer records hop i's answer; later answers for the same hop are ignored.
func (w *spreadWait) answer(i int, a fanAck) {
	w.mu.Lock()
	if w.got[i] {
		w.mu.Unlock()
		return
	}
	w.got[i], w.acks[i] = true, a
	w.left--
	last := w.left == 0
	w.mu.Unlock()
	if last {
		close(w.done)
	}
}

// hopWait is a hop of a spread waiting for its answer.
type hopWait struct {
	w *spreadWait
	i int
}

func (f *fanoutState) init(clock func() int64) {
	f.waits = make(map[fanKey]hopWait)
	f.clock = clock
	f.cur, f.prev = make(map[uint64]struct{}), make(map[uint64]struct{})
	f.swapped = clock()
}

// firstSight records id and reports whether it is new.
func (f *fanoutState) firstSight(id uint64) bool {
	now := f.clock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if now-f.swapped >= int64(seenTTL) || len(f.cur) >= maxSeen {
		f.prev, f.cur = f.cur, make(map[uint64]struct{})
		f.swapped = now
	}
	if _, ok := f.cur[id]; ok {
		return false
	}
	if _, ok := f.prev[id]; ok {
		return false
	}
	f.cur[id] = struct{}{}
	return true
}

// wait registers hop i of w as waiting for k's answer.
func (f *fanoutState) wait(k fanKey, w *spreadWait, i int) {
	f.mu.Lock()
	f.waits[k] = hopWait{w, i}
	f.mu.Unlock()
}

// forget drops k's wait if it is still w's.
func (f *fanoutState) forget(k fanKey, w *spreadWait) {
	f.mu.Lock()
	if h, ok := f.waits[k]; ok && h.w == w {
		delete(f.waits, k)
	}
	f.mu.Unlock()
}

func (f *fanoutState) deliver(k fanKey, a fanAck) bool {
	f.mu.Lock()
	h, ok := f.waits[k]
	delete(f.waits, k)
	f.mu.Unlock()
	if ok {
		h.w.answer(h.i, a)
	}
	return ok
}

// peerDown fails every hop waiting on addr.
func (f *fanoutState) peerDown(addr netip.AddrPort, err error) bool {
	f.mu.Lock()
	var hs []hopWait
	for k, h := range f.waits {
		if k.peer == addr {
			hs = append(hs, h)
			delete(f.waits, k)
		}
	}
	f.mu.Unlock()
	for _, h := range hs {
		h.w.answer(h.i, fanAck{err: err})
	}
	return len(hs) > 0
}

func (f *fanoutState) closeAll() {
	f.mu.Lock()
	waits := f.waits
	f.waits = make(map[fanKey]hopWait)
	f.mu.Unlock()
	for _, h := range waits {
		h.w.answer(h.i, fanAck{err: ErrClosed})
	}
}
