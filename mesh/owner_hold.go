package mesh

import (
	"sync"

	"github.com/marsmesh/marsmesh/internal/dispatch"
)

// Holds: the keys a node hosts (rooms, matches), each told once when a
// change of the view makes another node its owner, so the node can hand
// it off. The check runs on the node's dispatcher after every change of
// the view (coalesced: a burst of changes is one check), comparing each
// held key's owner with this node; a group of holds whose candidates did
// not change (same nodes, same weights) is skipped.

// hold is one Hold registration.
type hold struct {
	key    string
	k      uint64 // keyHash(key)
	onLoss func(key, newOwner string)
	done   bool // lost or released (under holdTable.mu)
}

// holdGroup is the holds of one candidate set (type and weighting).
type holdGroup struct {
	holds map[*hold]struct{}
	// checked: every hold of the group was last checked against a set
	// whose digest is sig, so a set with the same digest changes nothing.
	checked bool
	sig     uint64
}

// holdTable is a node's holds.
type holdTable struct {
	mu     sync.Mutex
	groups map[ownerSetKey]*holdGroup
	count  int
	check  *dispatch.Lane[struct{}, struct{}] // runs checkHolds; made by the first Hold
}

// Hold records that this node hosts key as a node of nodeType (with the
// same options Owner is given for that type), and arranges for onLoss to
// run once, on the node's dispatcher, when another node is key's owner
// in this node's view: at once if it already is (the request that made
// this node create the room was routed with a view that has moved on),
// or later, when a node joins, or this node drains (Shutdown: the holds
// are lost to the next owners as draining begins, while the node can still
// hand them off), or its weight changes. newOwner is the node that owns
// key now (its mesh address), or "" when no node of the type is online.
// The hold ends when onLoss is queued (onLoss may be nil: the hold then
// just ends); Hold again to take the key back.
// The returned release ends the hold without a call (it is idempotent).
//
// onLoss never runs on a transport goroutine or the MARS sync loop. The
// callbacks of different holds may run at the same time; a slow one (a
// hand-off over a stream) delays no other. Only this node's view decides:
// the new owner may see the change a sync interval earlier or later (see
// the package doc, "Ownership").
func (n *Node) Hold(nodeType, key string, onLoss func(key, newOwner string), opts ...OwnerOption) (release func()) {
	sk := ownerSetKey{nodeType, ownerOpts(opts)}
	h := &hold{key: key, k: keyHash(key), onLoss: onLoss}
	t := &n.own.holds
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.check == nil {
		n.startHoldChecks()
	}
	g := t.groups[sk]
	if g == nil {
		g = &holdGroup{holds: make(map[*hold]struct{})}
		t.groups[sk] = g
	}
	s := n.ownerSet(sk)
	switch {
	case len(g.holds) == 0:
		g.checked, g.sig = true, s.sig
	case g.checked && g.sig != s.sig:
		g.checked = false // the others were checked against another set: check them all next time
	}
	g.holds[h] = struct{}{}
	t.count++
	n.checkHoldLocked(g, h, s)
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !h.done {
			h.done = true
			delete(g.holds, h)
			t.count--
		}
	}
}

// Hold records that the default node hosts key (see Node.Hold). Before
// Setup there is nothing to hold: onLoss is never called and release does
// nothing.
func Hold(nodeType, key string, onLoss func(key, newOwner string), opts ...OwnerOption) (release func()) {
	if n := Default(); n != nil {
		return n.Hold(nodeType, key, onLoss, opts...)
	}
	return func() {}
}

// HeldKeys counts the keys the node holds (Hold, not yet lost or released).
func (n *Node) HeldKeys() int {
	t := &n.own.holds
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

// startHoldChecks makes the lane that checks the holds and has the view
// post to it after every change (the post never blocks, and the check
// runs on the dispatcher). Called with the table locked.
func (n *Node) startHoldChecks() {
	t := &n.own.holds
	t.groups = make(map[ownerSetKey]*holdGroup)
	t.check = dispatch.NewLane(n.ev.d, dispatch.LaneConfig[struct{}, struct{}]{
		Limit: 1, // one check pending is enough: it reads the latest view
		Run:   func(struct{}) { n.checkHolds() },
		Key:   func(struct{}) struct{} { return struct{}{} },
		Merge: func(o, _ struct{}) (struct{}, bool) { return o, true },
	})
	n.mc.View().OnChange(func() { t.check.Post(struct{}{}) })
}

// checkHoldsNow checks the holds on the caller's goroutine, if there are
// any (Shutdown: as draining begins, not when the dispatcher gets to the
// view's change).
func (n *Node) checkHoldsNow() {
	t := &n.own.holds
	t.mu.Lock()
	started := t.check != nil
	t.mu.Unlock()
	if started {
		n.checkHolds()
	}
}

// checkHolds checks every hold whose candidates changed.
func (n *Node) checkHolds() {
	t := &n.own.holds
	t.mu.Lock()
	defer t.mu.Unlock()
	for sk, g := range t.groups {
		if len(g.holds) == 0 {
			g.checked = false
			continue
		}
		s := n.ownerSet(sk)
		if g.checked && g.sig == s.sig {
			continue
		}
		for h := range g.holds {
			n.checkHoldLocked(g, h, s)
		}
		g.checked, g.sig = true, s.sig
	}
}

// checkHoldLocked ends h and queues its onLoss if another node owns its
// key in s.
func (n *Node) checkHoldLocked(g *holdGroup, h *hold, s *ownerSet) {
	owner, _ := s.owner(h.k, nil)
	if owner == n.selfStr {
		return
	}
	h.done = true
	delete(g.holds, h)
	n.own.holds.count--
	n.own.handoffs.Add(1)
	if h.onLoss != nil {
		cb, key := h.onLoss, h.key
		n.ev.once(func() { cb(key, owner) })
	}
}
