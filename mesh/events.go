package mesh

import (
	"sync"
	"sync/atomic"
)

// eventQueueSize bounds the user callbacks (OnSendFailure, OnReady,
// OnInitialSync) waiting for the node's event goroutine. Past it, new
// events are dropped, counted (Node.DroppedEvents) and logged once per
// period: a callback that blocks delays the ones after it, never the
// transport.
const eventQueueSize = 4096

// events runs user callbacks on one goroutine of the node, in the order
// they were posted, so no callback ever runs on a transport goroutine. It
// holds the callback lists it runs.
type events struct {
	b     *base
	done  <-chan struct{}        // the node stopped: run what is queued, then end
	ready func() <-chan struct{} // closed after the first sync with MARS

	ch      chan func()
	dropped atomic.Uint64
	wg      sync.WaitGroup // the event goroutine

	mu          sync.RWMutex
	sendFailure []func(addr string, err error)
	onReady     []func()
	onInitial   []func()
}

func newEvents(b *base, done <-chan struct{}, ready func() <-chan struct{}) *events {
	return &events{b: b, done: done, ready: ready, ch: make(chan func(), eventQueueSize)}
}

// start starts the event goroutine; wait waits for it to end (after done).
func (e *events) start() {
	e.wg.Add(1)
	go e.loop()
}

func (e *events) wait() { e.wg.Wait() }

// post queues f without waiting; it reports false (and counts) when the
// queue is full.
func (e *events) post(f func()) bool {
	select {
	case e.ch <- f:
		return true
	default:
		e.dropped.Add(1)
		e.b.warnOnce("mesh: event queue full, callback dropped", "limit", eventQueueSize)
		return false
	}
}

// loop runs posted callbacks until the node is done, then the ones
// still queued.
func (e *events) loop() {
	defer e.wg.Done()
	for {
		select {
		case f := <-e.ch:
			e.run(f)
		case <-e.done:
			for {
				select {
				case f := <-e.ch:
					e.run(f)
				default:
					return
				}
			}
		}
	}
}

func (e *events) run(f func()) {
	defer func() {
		if r := recover(); r != nil {
			e.b.log.Error("mesh: callback panicked", "panic", r, "node", e.b.selfStr)
		}
	}()
	f()
}

func (e *events) addSendFailure(cb func(addr string, err error)) {
	e.mu.Lock()
	e.sendFailure = append(e.sendFailure, cb)
	e.mu.Unlock()
}

// sendFailed tells the OnSendFailure callbacks, on the event goroutine.
func (e *events) sendFailed(addr string, err error) {
	e.mu.RLock()
	cbs := e.sendFailure
	e.mu.RUnlock()
	if len(cbs) == 0 {
		return
	}
	e.post(func() {
		for _, cb := range cbs {
			cb(addr, err)
		}
	})
}

// addReady and addInitialSync add OnReady and OnInitialSync callbacks.
func (e *events) addReady(cb func())       { e.onFirstSync(&e.onReady, cb) }
func (e *events) addInitialSync(cb func()) { e.onFirstSync(&e.onInitial, cb) }

// onFirstSync adds cb to list, or runs it at once if the node has synced.
func (e *events) onFirstSync(list *[]func(), cb func()) {
	e.mu.Lock()
	select {
	case <-e.ready():
		e.mu.Unlock()
		cb()
		return
	default:
	}
	*list = append(*list, cb)
	e.mu.Unlock()
}

// firstSync runs the OnInitialSync, then the OnReady callbacks (posted by
// the MARS client's first sync).
func (e *events) firstSync() {
	e.mu.Lock()
	initial, ready := e.onInitial, e.onReady
	e.onInitial, e.onReady = nil, nil
	e.mu.Unlock()
	for _, cb := range initial {
		cb()
	}
	for _, cb := range ready {
		cb()
	}
}

// OnSendFailure registers a callback that hears every peer a send could
// not reach, with the reason. Callbacks run one at a time on the node's
// event goroutine (see DroppedEvents), never on a transport goroutine.
func (n *Node) OnSendFailure(cb func(addr string, err error)) { n.ev.addSendFailure(cb) }

// OnReady registers a callback run once the node has synced with MARS
// (on the node's event goroutine; at once if it already has).
func (n *Node) OnReady(cb func()) { n.ev.addReady(cb) }

// OnInitialSync registers a callback run after the first sync with MARS
// (at once if it already happened).
func (n *Node) OnInitialSync(cb func()) { n.ev.addInitialSync(cb) }

// DroppedEvents counts callbacks dropped because the event queue was full.
func (n *Node) DroppedEvents() uint64 { return n.ev.dropped.Load() }
