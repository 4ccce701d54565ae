// Package dispatch runs a node's user callbacks: the one place they run
// from, never on a transport or sync goroutine.
//
// Each subscription (one registered callback, or one channel) is a Lane: a
// queue of events and at most one goroutine delivering them, in order. A
// post never blocks and never runs user code, so the goroutines that post
// (the transport's, the MARS client's loop) never wait on a user. A slow
// subscriber delays only its own lane. A lane that falls behind does not
// drop anything silently: past its limit it coalesces, keeping one pending
// event per key (merged: the first old state with the latest new one), so
// its memory is bounded by the number of keys and the subscriber ends up
// with the current state, only the intermediate steps skipped.
package dispatch

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Dispatcher owns the lanes of one node.
type Dispatcher struct {
	log    *slog.Logger
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	enders map[*int]func() // Close of the lanes that stop when the dispatcher closes
	panics atomic.Uint64
	merged atomic.Uint64
}

// New returns a dispatcher that logs panicking callbacks to log.
func New(log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.Default()
	}
	return &Dispatcher{log: log, done: make(chan struct{})}
}

// Done is closed when Close starts: lanes that deliver to a channel stop
// waiting for their reader.
func (d *Dispatcher) Done() <-chan struct{} { return d.done }

// Panics counts callbacks that panicked (each is logged and recovered).
func (d *Dispatcher) Panics() uint64 { return d.panics.Load() }

// Merged counts events folded into a pending one because a lane was behind.
func (d *Dispatcher) Merged() uint64 { return d.merged.Load() }

// Close refuses new events and waits up to wait for the lanes to deliver
// what they hold. It reports whether every lane finished; a callback that
// is still running then is left behind (logged). Idempotent.
func (d *Dispatcher) Close(wait time.Duration) bool {
	d.mu.Lock()
	var enders []func()
	if !d.closed {
		d.closed = true
		close(d.done)
		for _, f := range d.enders {
			enders = append(enders, f)
		}
		d.enders = nil
	}
	d.mu.Unlock()
	for _, f := range enders {
		f()
	}
	finished := make(chan struct{})
	go func() { d.wg.Wait(); close(finished) }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-finished:
		return true
	case <-t.C:
		d.log.Error("dispatch: callbacks still running after close; leaving them behind", "waited", wait)
		return false
	}
}

// start counts a lane goroutine, unless the dispatcher is closed.
func (d *Dispatcher) start() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.wg.Add(1)
	return true
}

func (d *Dispatcher) isClosed() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Lane is one subscription: events of type E, coalesced by key K when the
// lane is behind.
type Lane[K comparable, E any] struct {
	d     *Dispatcher
	limit int
	run   func(E)
	key   func(E) K
	merge func(old, new E) (E, bool)
	onEnd func()
	id    *int // with OnEnd: the lane's entry in the dispatcher's enders

	mu      sync.Mutex
	q       []slot[E]
	head    int
	pending int
	idx     map[K]int // coalescing: key -> index in q of its pending event
	running bool
	closed  bool
	ended   bool
}

type slot[E any] struct {
	e  E
	ok bool
}

// LaneConfig configures a lane.
type LaneConfig[K comparable, E any] struct {
	// Limit is how many events queue in order before the lane coalesces.
	Limit int
	// Run delivers one event (user code: it may block, panic, take long).
	Run func(E)
	// Key groups events that may be merged.
	Key func(E) K
	// Merge folds new into the pending old event of the same key; keep
	// false drops both (e.g. the state went back to where it was).
	Merge func(old, new E) (merged E, keep bool)
	// OnEnd, if set, makes a lane that ends with its subscriber or with
	// the dispatcher: it runs once, after Close when the lane has delivered
	// everything, or as soon as the dispatcher closes (what is queued is
	// then dropped: the reader of a channel is not waited for).
	OnEnd func()
}

// NewLane adds a lane to d.
func NewLane[K comparable, E any](d *Dispatcher, c LaneConfig[K, E]) *Lane[K, E] {
	if c.Limit <= 0 {
		c.Limit = 1024
	}
	l := &Lane[K, E]{d: d, limit: c.Limit, run: c.Run, key: c.Key, merge: c.Merge, onEnd: c.OnEnd}
	if l.onEnd != nil {
		l.id = new(int)
		d.mu.Lock()
		closed := d.closed
		if !closed {
			if d.enders == nil {
				d.enders = make(map[*int]func())
			}
			d.enders[l.id] = l.Close
		}
		d.mu.Unlock()
		if closed {
			l.Close()
		}
	}
	return l
}

// Post queues e for delivery. It never blocks and never runs user code.
// After Close (of the lane or the dispatcher) it does nothing.
func (l *Lane[K, E]) Post(e E) {
	l.mu.Lock()
	if l.closed || l.d.isClosed() {
		l.mu.Unlock()
		return
	}
	l.addLocked(e)
	start := l.startLocked()
	l.mu.Unlock()
	if start {
		go l.deliver()
	}
}

// PostAll queues events in order, as one Post each.
func (l *Lane[K, E]) PostAll(es []E) {
	if len(es) == 0 {
		return
	}
	l.mu.Lock()
	if l.closed || l.d.isClosed() {
		l.mu.Unlock()
		return
	}
	for _, e := range es {
		l.addLocked(e)
	}
	start := l.startLocked()
	l.mu.Unlock()
	if start {
		go l.deliver()
	}
}

// Close stops the lane: what is queued is still delivered, then OnEnd
// runs. Idempotent.
func (l *Lane[K, E]) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	end := !l.running && l.endLocked()
	l.mu.Unlock()
	if l.id != nil {
		l.d.mu.Lock()
		delete(l.d.enders, l.id)
		l.d.mu.Unlock()
	}
	if end {
		l.onEnd()
	}
}

// endLocked reports whether OnEnd should run now (once).
func (l *Lane[K, E]) endLocked() bool {
	if l.ended || l.onEnd == nil {
		return false
	}
	l.ended = true
	return true
}

func (l *Lane[K, E]) startLocked() bool {
	if l.running || l.pending == 0 || !l.d.start() {
		return false
	}
	l.running = true
	return true
}

func (l *Lane[K, E]) addLocked(e E) {
	if l.idx == nil && l.pending >= l.limit {
		l.coalesceLocked()
	}
	if l.idx != nil {
		k := l.key(e)
		if i, ok := l.idx[k]; ok {
			l.d.merged.Add(1)
			merged, keep := l.merge(l.q[i].e, e)
			if keep {
				l.q[i].e = merged
			} else {
				l.q[i] = slot[E]{}
				l.pending--
				delete(l.idx, k)
			}
			return
		}
		l.idx[k] = len(l.q)
	}
	l.q = append(l.q, slot[E]{e: e, ok: true})
	l.pending++
}

// coalesceLocked switches the lane to one pending event per key, merging
// what is queued.
func (l *Lane[K, E]) coalesceLocked() {
	l.idx = make(map[K]int)
	for i := l.head; i < len(l.q); i++ {
		if !l.q[i].ok {
			continue
		}
		e := l.q[i].e
		k := l.key(e)
		j, ok := l.idx[k]
		if !ok {
			l.idx[k] = i
			continue
		}
		l.d.merged.Add(1)
		l.q[i] = slot[E]{}
		l.pending--
		merged, keep := l.merge(l.q[j].e, e)
		if keep {
			l.q[j].e = merged
		} else {
			l.q[j] = slot[E]{}
			l.pending--
			delete(l.idx, k)
		}
	}
}

// popLocked takes the next event.
func (l *Lane[K, E]) popLocked() (E, bool) {
	for l.head < len(l.q) {
		s := l.q[l.head]
		l.q[l.head] = slot[E]{}
		l.head++
		if !s.ok {
			continue
		}
		l.pending--
		if l.idx != nil {
			delete(l.idx, l.key(s.e))
		}
		l.compactLocked()
		return s.e, true
	}
	var zero E
	return zero, false
}

// compactLocked reclaims the delivered head of the queue.
func (l *Lane[K, E]) compactLocked() {
	if l.pending == 0 {
		l.q, l.head, l.idx = l.q[:0], 0, nil // caught up: back to plain order
		return
	}
	if l.head < 64 || 2*l.head < len(l.q) {
		return
	}
	n := copy(l.q, l.q[l.head:])
	clear(l.q[n:])
	l.q, l.head = l.q[:n], 0
	if l.idx != nil {
		clear(l.idx)
		for i := range l.q {
			if l.q[i].ok {
				l.idx[l.key(l.q[i].e)] = i
			}
		}
	}
}

func (l *Lane[K, E]) deliver() {
	defer l.d.wg.Done()
	for {
		l.mu.Lock()
		if l.onEnd != nil && l.d.isClosed() {
			l.q, l.head, l.pending, l.idx = nil, 0, 0, nil // nobody waits for these
		}
		e, ok := l.popLocked()
		if !ok {
			l.running = false
			end := l.closed && l.endLocked()
			l.mu.Unlock()
			if end {
				l.onEnd()
			}
			return
		}
		l.mu.Unlock()
		l.call(e)
	}
}

func (l *Lane[K, E]) call(e E) {
	defer func() {
		if r := recover(); r != nil {
			l.d.panics.Add(1)
			l.d.log.Error("dispatch: a callback panicked", "panic", r)
		}
	}()
	l.run(e)
}

// Pending is how many events wait in the lane.
func (l *Lane[K, E]) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending
}
