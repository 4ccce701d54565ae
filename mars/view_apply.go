package mars

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// How a View changes: syncs from MARS (apply, endGrace, forget) and what
// this node learns ahead of MARS (MarkDraining, MarkUnreachable,
// MarkReachable, tick). Every change of a node's effective state becomes a
// NodeEvent for the subscribers, in order, while the view is locked.

// keyChange is one shared-data event to deliver after the view is unlocked.
type keyChange struct {
	key     string
	val     int16
	removed bool
}

// effective is the state lookups show: MARS's, brought forward by what this
// node learned itself.
func (n *viewNode) effective(now time.Time) State {
	s := n.mars
	if n.drain && (s == StateJoining || s == StateOnline) {
		s = StateDraining
	}
	if s.live() && !n.unreachUntil.IsZero() && now.Before(n.unreachUntil) {
		s = StateOffline
	}
	return s
}

// marsState is the state of a record from a MARS that sends none (an
// earlier revision): online unless listed offline.
func marsState(r *nodeRecord) State {
	if r.Status == StatusOffline {
		return StateOffline
	}
	return StateOnline
}

// reasonFor names a change MARS made.
func reasonFor(old, new State) Reason {
	switch new {
	case StateJoining:
		if old == StateOffline {
			return ReasonBack
		}
		return ReasonRegistered
	case StateOnline:
		if old == StateOffline {
			return ReasonBack
		}
		return ReasonReady
	case StateDraining:
		return ReasonDraining
	case StateOffline:
		return ReasonSilent
	}
	return ReasonRemoved
}

// changeSet collects the events of one change of the view.
type changeSet struct {
	events []NodeEvent
	dirty  bool // membership or records changed: rebuild the indexes
}

func (c *changeSet) add(n Node, old, new State, why Reason) {
	if old == new {
		return
	}
	n.State = new
	c.events = append(c.events, NodeEvent{Node: n, Old: old, New: new, Reason: why})
}

// appeared records a node incarnation seen for the first time, in state
// st. During the view's first sync it is simply there; later, the steps
// every node goes through are filled in (it registered, then became ...).
func (v *View) appeared(c *changeSet, n Node, st State, initial bool) {
	if initial {
		c.add(n, StateNone, st, ReasonCurrent)
		return
	}
	c.add(n, StateNone, StateJoining, ReasonRegistered)
	c.add(n, StateJoining, st, reasonFor(StateJoining, st))
}

// gone records a node incarnation leaving the view.
func (v *View) gone(c *changeSet, vn *viewNode, why Reason) {
	n := v.nodeShared(vn)
	old := vn.state
	if why == ReasonLeft && (old == StateJoining || old == StateOnline) {
		// A node leaves only after draining: the view missed that step.
		c.add(n, old, StateDraining, ReasonDraining)
		old = StateDraining
	}
	c.add(n, old, StateGone, why)
}

// putLocked installs a node record with its state from MARS.
func (v *View) putLocked(c *changeSet, r *nodeRecord, st State, initial bool, now time.Time) {
	old := v.nodes[r.Addr]
	if old != nil && old.mars == st && sameRecord(&old.rec, r) {
		return // nothing new (a sync that looks back carries records the view has)
	}
	n := v.nodeFrom(r)
	n.mars = st
	if old != nil && old.rec.Inc == r.Inc {
		n.drain = old.drain
		if old.mars == st {
			n.unreachUntil = old.unreachUntil // MARS has no news: the transport's word stands
		}
	}
	n.state = n.effective(now)
	v.nodes[r.Addr] = n
	c.dirty = true
	switch {
	case old == nil:
		v.appeared(c, v.nodeShared(n), n.state, initial)
	case old.rec.Inc != r.Inc:
		v.gone(c, old, ReasonReplaced)
		v.appeared(c, v.nodeShared(n), n.state, false)
	default:
		c.add(v.nodeShared(n), old.state, n.state, reasonFor(old.state, n.state))
	}
}

func sameRecord(a, b *nodeRecord) bool {
	return a.Addr == b.Addr && a.Inc == b.Inc && a.Type == b.Type && a.Role == b.Role && a.Status == b.Status &&
		a.EndPoint == b.EndPoint && bytes.Equal(a.Values, b.Values)
}

// removeLocked drops a node from the view.
func (v *View) removeLocked(c *changeSet, addr string, why Reason) {
	n := v.nodes[addr]
	if n == nil {
		return
	}
	delete(v.nodes, addr)
	delete(v.carriedNodes, addr)
	c.dirty = true
	v.gone(c, n, why)
}

// finishLocked rebuilds the indexes and hands the events to the
// subscribers.
func (v *View) finishLocked(c *changeSet) {
	if c.dirty {
		v.reindexLocked()
	}
	if len(c.events) == 0 {
		return
	}
	for _, f := range v.subs {
		f(c.events)
	}
}

// apply installs a complete sync. A full sync replaces the view, except
// that in carry mode entries missing from it are kept (and marked carried)
// until endGrace. It returns the shared-data changes, and whether the sync
// was usable (a delta must continue the view's version).
func (v *View) apply(h *syncHead, b *syncBody, carry bool, now time.Time) ([]keyChange, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	full := h.Flags&syncFull != 0
	if !full && (h.MarsInc != v.marsInc || h.From > v.ver || h.To < v.ver) {
		return nil, false // not a continuation of this view: the next report asks again
	}
	if full && h.MarsInc == v.marsInc && h.To < v.ver {
		return nil, false // older than what we hold
	}
	if full && h.Flags&syncBuckets != 0 && h.MarsInc == v.marsInc {
		// The buckets it does not list matched the view this node kept,
		// which has changed since (an earlier bucket sync): not usable.
		return nil, false
	}
	initial := v.marsInc == 0 && v.ver == 0 && len(v.nodes) == 0
	state := func(i int) State {
		if i < len(b.States) {
			return b.States[i]
		}
		return marsState(&b.Nodes[i])
	}
	var c changeSet
	var changes []keyChange
	if full {
		// A syncBuckets sync replaces only the buckets it lists: every
		// other entry of the view is confirmed as it is.
		var only *bucketSet
		if h.Flags&syncBuckets != 0 {
			if b.NB == 0 {
				return nil, false
			}
			only = &bucketSet{nb: b.NB, diff: make(map[int]bool, len(b.Buckets))}
			for _, i := range b.Buckets {
				only.diff[i] = true
			}
		}
		listed := make(map[string]bool, len(b.Nodes))
		for i := range b.Nodes {
			listed[b.Nodes[i].Addr] = true
		}
		clear(v.carriedNodes)
		clear(v.carriedKeys)
		for a := range v.nodes {
			switch {
			case listed[a]:
			case only != nil && !only.has(nodeNameHash(a)):
			case carry:
				v.carriedNodes[a] = true
			default:
				v.removeLocked(&c, a, ReasonRemoved)
			}
		}
		for i := range b.Nodes {
			v.putLocked(&c, &b.Nodes[i], state(i), initial, now)
		}
		freshKeys := make(map[string]int16, len(b.Keys))
		for _, e := range b.Keys {
			freshKeys[e.Key] = e.Val
		}
		for k, old := range v.keys {
			nv, ok := freshKeys[k]
			switch {
			case !ok && only != nil && !only.has(keyNameHash(k)):
				freshKeys[k] = old
			case !ok && carry:
				freshKeys[k] = old
				v.carriedKeys[k] = true
			case !ok:
				changes = append(changes, keyChange{key: k, removed: true})
			case nv != old:
				changes = append(changes, keyChange{key: k, val: nv})
			}
		}
		for k, nv := range freshKeys {
			if _, ok := v.keys[k]; !ok {
				changes = append(changes, keyChange{key: k, val: nv})
			}
		}
		v.keys = freshKeys
		c.dirty = true
	} else {
		for i := range b.Nodes {
			delete(v.carriedNodes, b.Nodes[i].Addr)
			v.putLocked(&c, &b.Nodes[i], state(i), false, now)
		}
		for i, a := range b.Gone {
			why := ReasonRemoved
			if i < len(b.GoneWhy) && b.GoneWhy[i] == goneLeft {
				why = ReasonLeft
			}
			v.removeLocked(&c, a, why)
		}
		for _, e := range b.Keys {
			delete(v.carriedKeys, e.Key)
			if old, ok := v.keys[e.Key]; !ok || old != e.Val {
				v.keys[e.Key] = e.Val
				changes = append(changes, keyChange{key: e.Key, val: e.Val})
			}
		}
		for _, k := range b.Dropped {
			delete(v.carriedKeys, k)
			if _, ok := v.keys[k]; ok {
				delete(v.keys, k)
				changes = append(changes, keyChange{key: k, removed: true})
			}
		}
	}
	v.marsInc, v.ver, v.syncedAt = h.MarsInc, h.To, now
	if full && h.Flags&syncBuckets != 0 && v.totalLocked() != b.Total {
		// The view kept a difference its digest did not show (a bucket
		// sum collided): ask for a full snapshot (a view at version 0
		// gets one).
		v.ver = 0
	}
	v.expireLocked(&c, now)
	v.finishLocked(&c)
	return changes, true
}

// endGrace drops the carried entries the new MARS never confirmed.
func (v *View) endGrace() []keyChange {
	v.mu.Lock()
	defer v.mu.Unlock()
	var c changeSet
	var changes []keyChange
	for a := range v.carriedNodes {
		v.removeLocked(&c, a, ReasonRemoved)
	}
	for k := range v.carriedKeys {
		delete(v.keys, k)
		changes = append(changes, keyChange{key: k, removed: true})
	}
	clear(v.carriedNodes)
	clear(v.carriedKeys)
	v.finishLocked(&c)
	return changes
}

// forget empties the view (the node moved to another app); the next full
// sync fills it again and reports every key as changed.
func (v *View) forget() []keyChange {
	v.mu.Lock()
	defer v.mu.Unlock()
	var c changeSet
	var changes []keyChange
	for k := range v.keys {
		changes = append(changes, keyChange{key: k, removed: true})
	}
	for _, a := range slices.Sorted(maps.Keys(v.nodes)) {
		v.removeLocked(&c, a, ReasonRemoved)
	}
	v.resetLocked()
	v.finishLocked(&c)
	return changes
}

// MarkDraining records that the node at addr (incarnation inc) said it
// drains, ahead of MARS: it leaves the online lists at once. It is a no-op
// for a node the view does not list with that incarnation.
func (v *View) MarkDraining(addr string, inc uint64) {
	v.local(addr, inc, ReasonDrainNotice, func(n *viewNode) { n.drain = true })
}

// MarkUnreachable records that the transport found the node at addr
// (incarnation inc, or any when 0) dead: it is offline until `until`,
// unless MARS changes its state first or MarkReachable clears it.
func (v *View) MarkUnreachable(addr string, inc uint64, until time.Time) {
	v.local(addr, inc, ReasonUnreachable, func(n *viewNode) { n.unreachUntil = until })
}

// MarkReachable clears MarkUnreachable: the node at addr (incarnation inc,
// or any when 0) was heard from again.
func (v *View) MarkReachable(addr string, inc uint64) {
	v.local(addr, inc, ReasonBack, func(n *viewNode) { n.unreachUntil = time.Time{} })
}

func (v *View) local(addr string, inc uint64, why Reason, f func(*viewNode)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nodes[addr]
	if n == nil || inc != 0 && n.rec.Inc != inc {
		return
	}
	var c changeSet
	old := n.state
	f(n)
	n.state = n.effective(time.Now())
	if n.state != old {
		c.dirty = true
		c.add(v.nodeShared(n), old, n.state, why)
	}
	v.finishLocked(&c)
}

// tick ends the unreachable marks whose time is up.
func (v *View) tick(now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var c changeSet
	v.expireLocked(&c, now)
	v.finishLocked(&c)
}

func (v *View) expireLocked(c *changeSet, now time.Time) {
	for _, n := range v.nodes {
		if n.unreachUntil.IsZero() || now.Before(n.unreachUntil) {
			continue
		}
		n.unreachUntil = time.Time{}
		old := n.state
		n.state = n.effective(now)
		if n.state != old {
			c.dirty = true
			c.add(v.nodeShared(n), old, n.state, ReasonBack)
		}
	}
}

// Subscribe registers f for the membership events of the view. f first
// gets the current state of every node (StateNone -> state, ReasonCurrent;
// nothing when the view is empty), then every change, in order. f runs
// while the view is locked: it must return at once and must not call the
// View (hand the events to another goroutine). The returned function
// removes the subscription.
func (v *View) Subscribe(f func([]NodeEvent)) (cancel func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var c changeSet
	for _, a := range v.addrs {
		n := v.nodes[a]
		c.add(v.nodeShared(n), StateNone, n.state, ReasonCurrent)
	}
	if len(c.events) > 0 {
		f(c.events)
	}
	id := new(int) // the subscription's identity
	v.subs = append(v.subs, f)
	v.subIDs = append(v.subIDs, id)
	return func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if i := slices.Index(v.subIDs, id); i >= 0 {
			v.subs = slices.Delete(v.subs, i, i+1)
			v.subIDs = slices.Delete(v.subIDs, i, i+1)
		}
	}
}

func (v *View) nodeFrom(r *nodeRecord) *viewNode {
	n := &viewNode{rec: *r}
	if old := v.nodes[r.Addr]; old != nil && bytes.Equal(old.rec.Values, r.Values) {
		n.values = old.values // unchanged: keep the decoded map
	} else {
		n.values = decodeValues(r.Values)
	}
	return n
}

// decodeValues decodes a metadata map that checkValues accepted, with one
// Go type per kind (see View).
func decodeValues(b []byte) map[string]interface{} {
	if len(b) == 0 {
		return nil
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.UseLooseInterfaceDecoding(true)
	m, err := dec.DecodeMap()
	if err != nil {
		return nil
	}
	for k, val := range m {
		m[k] = normalize(val)
	}
	return m
}

// normalize turns a loosely decoded msgpack value into the one type of its
// kind: msgpack writes small non-negative integers as unsigned, so the
// decoder's uint64 becomes int64 where it fits.
func normalize(val interface{}) interface{} {
	switch x := val.(type) {
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
	case []interface{}:
		for i := range x {
			x[i] = normalize(x[i])
		}
	case map[string]interface{}:
		for k := range x {
			x[k] = normalize(x[k])
		}
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, e := range x {
			if s, ok := k.(string); ok {
				m[s] = normalize(e)
			}
		}
		return m
	}
	return val
}

func (v *View) reindexLocked() {
	v.addrs = v.addrs[:0]
	v.online = v.online[:0]
	v.byType = make(map[string][]string)
	v.byRole = make(map[string][]string)
	v.onByType = make(map[string][]string)
	v.onByRole = make(map[string][]string)
	v.byEP = make(map[string]string)
	for a := range v.nodes {
		v.addrs = append(v.addrs, a)
	}
	slices.Sort(v.addrs)
	for _, a := range v.addrs {
		n := v.nodes[a]
		r := &n.rec
		v.byType[r.Type] = append(v.byType[r.Type], a)
		v.byRole[r.Role] = append(v.byRole[r.Role], a)
		if n.state == StateOnline {
			v.online = append(v.online, a)
			v.onByType[r.Type] = append(v.onByType[r.Type], a)
			v.onByRole[r.Role] = append(v.onByRole[r.Role], a)
		}
		if r.EndPoint != "" {
			if _, taken := v.byEP[r.EndPoint]; !taken {
				v.byEP[r.EndPoint] = a
			}
		}
	}
	v.types = v.types[:0]
	for t := range v.byType {
		v.types = append(v.types, t)
	}
	slices.Sort(v.types)
	v.gen.Add(1)
	for _, f := range v.onChange {
		f()
	}
}
