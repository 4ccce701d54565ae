package mesh

import (
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/internal/dispatch"
)

// laneLimit is how many events one callback registration queues in order
// before its lane coalesces (per peer or node: the latest), see
// MergedEvents.
const laneLimit = 4096

// events is the node's dispatcher: every user callback of the node
// (OnSendFailure, OnReady, OnInitialSync, and through the MARS client
// OnUpdate, OnUpdated, the shared-data callbacks and the membership events)
// runs from here, never on a transport goroutine or the MARS client's sync
// loop. Each registration is a lane (internal/dispatch): callbacks of one
// registration run one at a time, in order; one that blocks delays only its
// own registration; a registration that falls behind gets coalesced events,
// never a silent gap.
type events struct {
	b *base
	d *dispatch.Dispatcher

	mu          sync.Mutex
	ready       bool
	sendFailure []*dispatch.Lane[string, sendFailure]
	onReady     []func()
	onInitial   []func()
}

// sendFailure is one OnSendFailure event.
type sendFailure struct {
	addr string
	err  error
}

func newEvents(b *base) *events {
	return &events{b: b, d: dispatch.New(b.log)}
}

// close waits up to wait for queued callbacks, then leaves the rest.
func (e *events) close(wait time.Duration) { e.d.Close(wait) }

func (e *events) addSendFailure(cb func(addr string, err error)) {
	l := dispatch.NewLane(e.d, dispatch.LaneConfig[string, sendFailure]{
		Limit: laneLimit,
		Run:   func(f sendFailure) { cb(f.addr, f.err) },
		Key:   func(f sendFailure) string { return f.addr },
		Merge: func(_, n sendFailure) (sendFailure, bool) { return n, true },
	})
	e.mu.Lock()
	e.sendFailure = append(e.sendFailure, l)
	e.mu.Unlock()
}

// sendFailed queues the OnSendFailure callbacks (never blocks).
func (e *events) sendFailed(addr string, err error) {
	e.mu.Lock()
	lanes := e.sendFailure
	e.mu.Unlock()
	for _, l := range lanes {
		l.Post(sendFailure{addr, err})
	}
}

// once runs f one time on the dispatcher.
func (e *events) once(f func()) {
	l := dispatch.NewLane(e.d, dispatch.LaneConfig[struct{}, struct{}]{
		Run:   func(struct{}) { f() },
		Key:   func(struct{}) struct{} { return struct{}{} },
		Merge: func(o, _ struct{}) (struct{}, bool) { return o, true },
	})
	l.Post(struct{}{})
	l.Close()
}

// addReady and addInitialSync add OnReady and OnInitialSync callbacks.
func (e *events) addReady(cb func())       { e.onFirstSync(&e.onReady, cb) }
func (e *events) addInitialSync(cb func()) { e.onFirstSync(&e.onInitial, cb) }

// onFirstSync adds cb to list, or queues it at once if the node is ready.
func (e *events) onFirstSync(list *[]func(), cb func()) {
	e.mu.Lock()
	if e.ready {
		e.mu.Unlock()
		e.once(cb)
		return
	}
	*list = append(*list, cb)
	e.mu.Unlock()
}

// firstSync queues the OnInitialSync, then the OnReady callbacks, in
// registration order (the MARS client calls it once, when the node is
// ready).
func (e *events) firstSync() {
	e.mu.Lock()
	e.ready = true
	initial, ready := e.onInitial, e.onReady
	e.onInitial, e.onReady = nil, nil
	e.mu.Unlock()
	e.once(func() {
		for _, cb := range initial {
			cb()
		}
		for _, cb := range ready {
			cb()
		}
	})
}

// OnSendFailure registers a callback that hears every peer a send could
// not reach, with the reason. It runs on the node's dispatcher, one call
// at a time for this registration, never on a transport goroutine; if it
// falls behind, it gets the latest failure of each peer (MergedEvents).
func (n *Node) OnSendFailure(cb func(addr string, err error)) { n.ev.addSendFailure(cb) }

// OnReady registers a callback run on the node's dispatcher once the node
// is ready (WaitReady); queued at once if it already is.
func (n *Node) OnReady(cb func()) { n.ev.addReady(cb) }

// OnInitialSync registers a callback run on the node's dispatcher after
// the first sync with MARS (when the node is ready, before the OnReady
// callbacks); queued at once if that already happened.
func (n *Node) OnInitialSync(cb func()) { n.ev.addInitialSync(cb) }

// MergedEvents counts callback events that were not delivered one by one
// because their callback had fallen behind: it got the latest event of
// the same peer, node or key instead (a membership event with
// ReasonResync). Nothing is dropped.
func (n *Node) MergedEvents() uint64 { return n.ev.d.Merged() }

// DroppedEvents is MergedEvents, under its earlier name: no callback event
// is dropped any more.
//
// Deprecated: use MergedEvents.
func (n *Node) DroppedEvents() uint64 { return n.MergedEvents() }
