package mesh

import "sync/atomic"

// eventQueueSize bounds the user callbacks (OnSendFailure, OnReady,
// OnInitialSync) waiting for the node's event goroutine. Past it, new
// events are dropped, counted (Node.DroppedEvents) and logged once per
// period: a callback that blocks delays the ones after it, never the
// transport.
const eventQueueSize = 4096

// events runs user callbacks on one goroutine of the node, in the order
// they were posted, so no callback ever runs on a transport goroutine.
type events struct {
	ch      chan func()
	dropped atomic.Uint64
}

func (e *events) init() { e.ch = make(chan func(), eventQueueSize) }

// post queues f without waiting; it reports false (and counts) when the
// queue is full.
func (n *Node) post(f func()) bool {
	select {
	case n.ev.ch <- f:
		return true
	default:
		n.ev.dropped.Add(1)
		n.warnOnce("mesh: event queue full, callback dropped", "limit", eventQueueSize)
		return false
	}
}

// eventLoop runs posted callbacks until the node is done, then the ones
// still queued.
func (n *Node) eventLoop() {
	defer n.bg.Done()
	for {
		select {
		case f := <-n.ev.ch:
			n.runEvent(f)
		case <-n.done:
			for {
				select {
				case f := <-n.ev.ch:
					n.runEvent(f)
				default:
					return
				}
			}
		}
	}
}

func (n *Node) runEvent(f func()) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("mesh: callback panicked", "panic", r, "node", n.selfStr)
		}
	}()
	f()
}

// DroppedEvents counts callbacks dropped because the event queue was full.
func (n *Node) DroppedEvents() uint64 { return n.ev.dropped.Load() }
