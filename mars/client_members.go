package mars

import (
	"context"
	"maps"
	"time"

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

// WaitDeclared waits until MARS lists the node in the state it declares
// (Life): the report that carried it was applied and its sync came back. It
// returns ctx's error when ctx ends first, ErrClosed when the client closes.
func (c *Client) WaitDeclared(ctx context.Context) error {
	for {
		c.syncMu.Lock()
		ch := c.syncCh
		c.syncMu.Unlock()
		if c.view.selfMarsState() == c.Life() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrClosed
		}
	}
}

// Interval is the client's report period.
func (c *Client) Interval() time.Duration { return c.cfg.Interval }

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
