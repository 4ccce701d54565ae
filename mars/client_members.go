package mars

import (
	"context"
	"maps"

	"github.com/marsmesh/marsmesh/internal/dispatch"
)

// Membership: the node's own life (joining, online, draining) and the
// events of every node's state.

// Drain declares the node draining: its next report (sent at once) tells
// MARS, and its own view drops it from the online lists now. There is no
// way back; Close then leaves.
func (c *Client) Drain() {
	c.mu.Lock()
	c.life = StateDraining
	c.mu.Unlock()
	c.view.MarkDraining(c.addr, c.inc)
	c.wake()
}

// Life is the membership state the node declares (joining until it sees
// itself in its view, then online; draining after Drain).
func (c *Client) Life() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life
}

// nodeKey identifies one node incarnation in a lane.
type nodeKey struct {
	addr string
	inc  uint64
}

// mergeNodeEvents folds a newer event of one incarnation into a pending
// one: the subscriber jumps from the state it knows to the latest.
func mergeNodeEvents(o, n NodeEvent) (NodeEvent, bool) {
	m := n
	m.Old, m.Reason = o.Old, ReasonResync
	return m, m.Old != m.New && !(m.Old == StateNone && m.New == StateGone)
}

// subscribe adds a lane for membership events delivered by run.
func (c *Client) subscribe(run func(NodeEvent), onEnd func()) (cancel func()) {
	l := dispatch.NewLane(c.disp, dispatch.LaneConfig[nodeKey, NodeEvent]{
		Limit: laneLimit,
		Run: func(e NodeEvent) {
			e.Values = maps.Clone(e.Values) // the view's map is shared by every event
			run(e)
		},
		Key:   func(e NodeEvent) nodeKey { return nodeKey{e.Addr, e.Incarnation} },
		Merge: mergeNodeEvents,
		OnEnd: onEnd,
	})
	unsub := c.view.Subscribe(l.PostAll)
	return func() {
		unsub()
		l.Close()
	}
}

// OnNodeEvent registers f for the membership events of the node's view:
// first the current state of every node it lists (StateNone -> state,
// ReasonCurrent), then every change, per node incarnation in order. f runs
// on the dispatcher; one that falls behind gets coalesced events (Reason
// ReasonResync: from the last state it was given to the current one), never
// a gap. The returned function removes the registration.
func (c *Client) OnNodeEvent(f func(NodeEvent)) (remove func()) {
	return c.subscribe(f, nil)
}

// WatchNodes is OnNodeEvent on a channel. The channel is closed when ctx
// ends or the dispatcher closes (the node shuts down). A reader that falls
// behind gets coalesced events, as with OnNodeEvent; one that stops reading
// holds up nothing else.
func (c *Client) WatchNodes(ctx context.Context) <-chan NodeEvent {
	ch := make(chan NodeEvent, 64)
	done := c.disp.Done()
	cancel := c.subscribe(func(e NodeEvent) {
		select {
		case ch <- e:
		case <-ctx.Done():
		case <-done:
		}
	}, func() { close(ch) })
	context.AfterFunc(ctx, cancel)
	return ch
}
