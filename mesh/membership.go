package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// Membership. Every node of the view has one state (NodeState), the same
// on every node that sees it: MARS decides it from what each node declares
// and from its silence, and three things bring a change forward on one
// node before MARS's next sync says it:
//
//   - a draining node tells every peer it has a session with (and answers
//     requests that still reach it with ErrDraining): the peer lists it
//     draining at once;
//   - this node's transport finds a peer dead (silent for retryTimeout, or
//     never answering a handshake): it lists it offline (ReasonUnreachable)
//     for twice retryTimeout, or until MARS or the peer says otherwise;
//   - a session with that peer comes up again: back to MARS's state.
//
// Lists meant for sending (GetNodeAddresses, GetNodeAddressesByType and
// ByRole, GetRandomNodeAddressByType, GetSiblingNodeAddress) hold online
// nodes only; GetAllNodeAddresses and its variants list every state.

// NodeState is a node's membership state (see the package doc).
type NodeState = mars.State

// Membership states.
const (
	StateNone     = mars.StateNone     // not listed
	StateJoining  = mars.StateJoining  // registered, not yet serving
	StateOnline   = mars.StateOnline   // serving: the only state in lists meant for sending
	StateDraining = mars.StateDraining // shutting down: finishes its work, refuses new requests (ErrDraining)
	StateOffline  = mars.StateOffline  // silent: MARS or this node's transport heard nothing for a while
	StateGone     = mars.StateGone     // left, removed or replaced: the last event of an incarnation
)

// NodeEvent is one change of a node's membership state: the node (address,
// incarnation, type, role, values, as listed then), its old and new state,
// and why.
type NodeEvent = mars.NodeEvent

// EventReason says what caused a NodeEvent.
type EventReason = mars.Reason

// Reasons of membership events.
const (
	ReasonCurrent     = mars.ReasonCurrent     // the state when the subscription started
	ReasonRegistered  = mars.ReasonRegistered  // registered at MARS (-> joining)
	ReasonReady       = mars.ReasonReady       // joining -> online
	ReasonDraining    = mars.ReasonDraining    // MARS lists it draining
	ReasonDrainNotice = mars.ReasonDrainNotice // it told this node it drains, ahead of MARS
	ReasonSilent      = mars.ReasonSilent      // MARS has not heard from it for a while
	ReasonUnreachable = mars.ReasonUnreachable // this node's transport found it dead
	ReasonBack        = mars.ReasonBack        // heard from again
	ReasonLeft        = mars.ReasonLeft        // left after draining
	ReasonRemoved     = mars.ReasonRemoved     // removed after a long silence
	ReasonReplaced    = mars.ReasonReplaced    // a new incarnation took its address
	ReasonResync      = mars.ReasonResync      // the subscriber fell behind: the latest state, steps skipped
)

// OnNodeEvent registers f for membership events: first the current state
// of every node of the view (from StateNone, ReasonCurrent), then every
// change, in order for each node incarnation, which always ends with
// StateGone. f runs on the node's dispatcher, one event at a time, never on
// a transport goroutine or the MARS sync loop; if it falls behind it gets
// coalesced events (ReasonResync: from the last state it was given to the
// current one), never a gap, and nothing else waits for it. The returned
// function removes the registration.
func (n *Node) OnNodeEvent(f func(NodeEvent)) (remove func()) { return n.mc.OnNodeEvent(f) }

// WatchNodes is OnNodeEvent on a channel, closed when ctx ends or the node
// shuts down. A reader that stops reading holds up nothing: its events
// coalesce until it reads again.
func (n *Node) WatchNodes(ctx context.Context) <-chan NodeEvent { return n.mc.WatchNodes(ctx) }

// NodeState returns the membership state of the node at a mesh address
// (StateNone when the view does not list it).
func (n *Node) NodeState(addr string) NodeState { return n.mc.View().State(addr) }

// IsDraining reports whether the node has begun draining (Shutdown).
func (n *Node) IsDraining() bool { return n.life.draining.Load() }

// unreachableFor is how long a peer the transport found dead stays listed
// offline here unless MARS or the peer says otherwise first.
func (n *Node) unreachableFor() time.Duration { return 2 * n.cfg.RetryTimeoutDuration() }

// peerIncs remembers the incarnation of each peer session (from OnPeerUp),
// so a dead session marks exactly that incarnation. view is the MARS
// client's view once New has made it (the transport may report sessions
// before that).
type peerIncs struct {
	mu   sync.Mutex
	m    map[netip.AddrPort]uint64
	view atomic.Pointer[mars.View]
}

func (p *peerIncs) set(a netip.AddrPort, inc uint64) {
	p.mu.Lock()
	if p.m == nil {
		p.m = make(map[netip.AddrPort]uint64)
	}
	p.m[a] = inc
	p.mu.Unlock()
}

func (p *peerIncs) take(a netip.AddrPort) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inc, ok := p.m[a]
	delete(p.m, a)
	return inc, ok
}

// onPeerUp runs when a session with a peer incarnation is established (on
// the transport's event goroutine).
func (n *Node) onPeerUp(addr netip.AddrPort, inc uint64) {
	n.peers.set(addr, inc)
	if v := n.peers.view.Load(); v != nil {
		v.MarkReachable(n.names.name(addr), inc)
	}
	if n.life.draining.Load() {
		n.tellDrain(addr) // it dialed a node that drains: say so before it asks
	}
}

// peerDownMembership lists a peer the transport found dead offline.
func (n *Node) peerDownMembership(addr netip.AddrPort, err error) {
	inc, known := n.peers.take(addr)
	v := n.peers.view.Load()
	if v == nil || !errors.Is(err, rudp.ErrPeerTimeout) && !errors.Is(err, rudp.ErrUnreachable) {
		return
	}
	if !known {
		inc = 0 // it never answered a handshake: whichever incarnation is listed there does not answer
	}
	v.MarkUnreachable(n.names.name(addr), inc, time.Now().Add(n.unreachableFor()))
}

// drainNotice is the body of a drain notice and of a draining answer: the
// node's incarnation, so the peer marks exactly this one.
func (n *Node) drainNotice() []byte { return binary.BigEndian.AppendUint64(nil, n.mc.Incarnation()) }

// drainHeard takes a drain notice (or a draining answer) from a peer.
func (n *Node) drainHeard(from netip.AddrPort, p []byte) {
	if len(p) != 8 {
		n.bad("malformed drain notice", from)
		return
	}
	if v := n.peers.view.Load(); v != nil {
		v.MarkDraining(n.names.name(from), binary.BigEndian.Uint64(p))
	}
}

// tellDrain sends the drain notice to one peer; done (if not nil) hears
// when the peer's transport has it.
func (n *Node) tellDrain(to netip.AddrPort) error {
	return n.tellDrainDone(to, nil)
}

func (n *Node) tellDrainDone(to netip.AddrPort, done func(error)) error {
	return n.tr.SendMsg(context.Background(), to, kindDrain, nil, n.drainNotice(), rudp.SendOptions{NoWait: true, AckNow: true, Done: done})
}

// drainState follows the drain notices a node sent.
type drainState struct {
	mu     sync.Mutex
	told   map[string]bool // peer -> its transport acknowledged the notice
	out    int             // notices not yet acknowledged nor failed
	allIn  chan struct{}   // closed when out reaches 0
	closed bool
}

func (d *drainState) settle(peer string, acked bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.told[peer] = acked
	if d.out--; d.out == 0 && !d.closed {
		d.closed = true
		close(d.allIn)
	}
}

// drainDialLimit bounds the nodes without a session a draining node
// dials to tell them; in a larger cluster those learn it from MARS (and
// Shutdown waits a sync interval for them).
const drainDialLimit = 64

// startDrain begins draining: MARS hears it at once (the next report goes
// now), the node's own lists drop it, new requests and streams are
// answered with ErrDraining, and listed nodes get a notice: every one it
// has a session with, and the ones that may send to it (joining, online)
// without a session too when they are at most drainDialLimit.
func (n *Node) startDrain() *drainState {
	n.life.draining.Store(true)
	if !n.guest {
		n.mc.Drain()
	}
	n.checkHoldsNow() // lost to the next owners as draining begins (owner_hold.go)
	d := &drainState{told: make(map[string]bool), allIn: make(chan struct{})}
	targets := make(map[netip.AddrPort]bool)
	view := n.mc.View()
	for _, p := range n.tr.Peers() {
		if _, listed := view.Node(n.names.name(p)); listed {
			targets[p] = true // not MARS, guests or tools: they get ErrDraining if they ask
		}
	}
	var dial []netip.AddrPort
	for _, nd := range view.Nodes() {
		if nd.Self || nd.State != StateOnline && nd.State != StateJoining {
			continue
		}
		if a, err := netip.ParseAddrPort(nd.Addr); err == nil && !targets[a] {
			dial = append(dial, a)
		}
	}
	if len(dial) <= drainDialLimit {
		for _, a := range dial {
			targets[a] = true
		}
	}
	d.out = len(targets) + 1 // +1: released below, once every notice is out
	for p := range targets {
		name := n.names.name(p)
		if err := n.tellDrainDone(p, func(err error) { d.settle(name, err == nil) }); err != nil {
			d.settle(name, false) // not queued (a full queue, or the session ended)
		}
	}
	d.settle("", false)
	return d
}

// unaware reports whether some node that may send to this one (listed
// joining or online) has not acknowledged a drain notice: it learns of the
// drain only through MARS.
func (n *Node) unaware(d *drainState) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, nd := range n.mc.View().Nodes() {
		if !nd.Self && (nd.State == StateOnline || nd.State == StateJoining) && !d.told[nd.Addr] {
			return true
		}
	}
	return false
}

// drain is the first part of Shutdown: the node drains, and waits (each
// wait bounded, all cut short by ctx) until the cluster knows: until MARS
// lists it draining (a round trip) and every node that may send to it
// acknowledged the notice, or else a sync interval more, in which those
// nodes' views learn it from MARS.
func (n *Node) drain(ctx context.Context) {
	if !n.guest {
		if err := n.mc.SetStatus(mars.StatusOffline); err != nil { // Diarkis status, for IsNodeOffline
			n.log.Warn("mesh: shutdown could not set the status offline", "err", err)
		}
	}
	d := n.startDrain()
	wctx, cancel := context.WithTimeout(ctx, OfflineWait)
	defer cancel()
	if n.guest || !n.IsPartOfCluster() || !n.mc.InTouch() {
		// MARS does not hear it now: the notices are all there is.
		select {
		case <-d.allIn:
		case <-wctx.Done():
		}
		return
	}
	if err := n.mc.WaitDeclared(wctx); err != nil {
		n.log.Warn("mesh: shutdown did not see MARS list the node draining", "err", err)
		return
	}
	every := n.mc.Interval()
	t := time.NewTimer(every + every/4) // every node has synced since MARS listed it draining
	defer t.Stop()
	select {
	case <-d.allIn:
		if !n.unaware(d) {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	case <-t.C:
	case <-ctx.Done():
	}
}
