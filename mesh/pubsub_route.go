package mesh

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// Routing: which nodes a publisher sends a topic to. Each node's interest
// (its patterns and queue groups, an interestEntry each) reaches the
// publisher two ways: pushed by the subscriber when it changes (acked, so
// Subscribe returns once every node it knows routes to it), and in the
// subscriber's MARS record (the node value topicsValue), which nodes that
// joined later read from their view. The newer version wins.
//
// A route table is built from the view's online nodes and their interest
// whenever the view's generation, the remote interest or the local
// subscriptions change, and caches the targets of each topic until then.

// remoteInterest is what one node incarnation subscribes to.
type remoteInterest struct {
	inc     uint64
	ver     uint64
	pushed  bool      // heard from the node itself, not only through MARS
	heardAt time.Time // when it was pushed
	entries []interestEntry
}

// routeKey names the state a route table was built from.
type routeKey struct{ gen, remote, local uint64 }

// member is a node a topic is sent to.
type member struct {
	addr string
	ap   netip.AddrPort
	self bool
}

// groupRoute is the members of one queue group for one topic, sorted by
// address.
type groupRoute struct {
	name    string
	members []member
}

// topicRoute is where one topic goes.
type topicRoute struct {
	plain  []member     // nodes with a plain subscription matching (self excluded: local delivery)
	groups []groupRoute // queue groups with a member matching, by name
	any    []member     // nodes with any matching subscription (Request), sorted
	local  bool         // this node has a plain subscription matching
}

// routeNode is one node with interest, in a route table.
type routeNode struct {
	member
	entries []interestEntry
}

// unlistedFor is how long a node that pushed its interest is routed to
// while the view does not list it yet (MARS lists a live node within a
// couple of sync intervals); a session with it that ends drops it at once.
const unlistedFor = 10 * time.Second

// peerDown drops the pushed interest of a node the view does not list
// when its session ends (a listed node leaves routes by its state).
func (ps *pubsub) peerDown(addr string, listed bool) {
	if listed {
		return
	}
	ps.rmu.Lock()
	if _, ok := ps.remote[addr]; ok {
		delete(ps.remote, addr)
		ps.remoteVer++
	}
	ps.rmu.Unlock()
}

// maxRouteCache bounds the topics a route table caches; past it the cache
// starts again.
const maxRouteCache = 4096

type routeTable struct {
	key   routeKey
	nodes []routeNode // self included (its local entries), sorted by address

	mu    sync.Mutex
	cache map[string]*topicRoute
}

// merge records interest heard of a node (pushed or read from MARS); it
// reports whether it changed anything. Caller holds ps.rmu.
func (ps *pubsub) mergeLocked(addr string, ri remoteInterest) bool {
	old, ok := ps.remote[addr]
	if ok && old.inc == ri.inc && (ri.ver < old.ver || ri.ver == old.ver && (old.pushed || !ri.pushed)) {
		return false
	}
	if ok && old.inc == ri.inc && ri.ver == old.ver {
		old.pushed = true // same content, now also heard directly
		ps.remote[addr] = old
		ps.remoteVer++
		return true
	}
	ps.remote[addr] = ri
	ps.remoteVer++
	return true
}

// heard takes an interest push from a node incarnation.
func (ps *pubsub) heard(addr string, inc, ver uint64, entries []interestEntry) {
	ps.rmu.Lock()
	ps.mergeLocked(addr, remoteInterest{inc: inc, ver: ver, pushed: true, heardAt: time.Now(), entries: entries})
	ps.rmu.Unlock()
}

// routes returns the current route table, rebuilt if the view, the remote
// interest or the local subscriptions changed.
func (ps *pubsub) routes(v *mars.View) *routeTable {
	gen := v.Generation()
	ps.rmu.Lock()
	key := routeKey{gen, ps.remoteVer, ps.localVer.Load()}
	ps.rmu.Unlock()
	if rt := ps.route.Load(); rt != nil && rt.key == key {
		return rt
	}
	ps.buildMu.Lock()
	defer ps.buildMu.Unlock()
	nodes := v.Nodes()
	ps.rmu.Lock()
	defer ps.rmu.Unlock()
	if rt := ps.route.Load(); rt != nil && rt.key == key && ps.remoteVer == key.remote {
		return rt
	}
	listed := make(map[string]bool, len(nodes))
	for _, nd := range nodes {
		if nd.Self {
			continue
		}
		listed[nd.Addr] = true
		if s, ok := nd.Values[topicsValue].(string); ok {
			if ver, entries, err := parseInterestText(s); err == nil {
				ps.mergeLocked(nd.Addr, remoteInterest{inc: nd.Incarnation, ver: ver, entries: entries})
			}
		}
	}
	now := time.Now()
	var unlisted []string
	for addr, ri := range ps.remote {
		switch {
		case listed[addr]:
		case ri.pushed && now.Sub(ri.heardAt) < unlistedFor:
			unlisted = append(unlisted, addr) // it told this node before the view lists it
		default:
			delete(ps.remote, addr) // gone from the view
		}
	}
	rt := &routeTable{cache: make(map[string]*topicRoute)}
	for _, nd := range nodes {
		if nd.Self {
			continue
		}
		ri, ok := ps.remote[nd.Addr]
		// Online nodes, and joining ones that told this node themselves:
		// their push is newer than the view.
		if !ok || ri.inc != nd.Incarnation || len(ri.entries) == 0 ||
			nd.State != StateOnline && !(nd.State == StateJoining && ri.pushed) {
			continue
		}
		ap, err := netip.ParseAddrPort(nd.Addr)
		if err != nil {
			continue
		}
		rt.nodes = append(rt.nodes, routeNode{member{addr: nd.Addr, ap: ap}, ri.entries})
	}
	for _, addr := range unlisted {
		ri := ps.remote[addr]
		if ap, err := netip.ParseAddrPort(addr); err == nil && len(ri.entries) > 0 {
			rt.nodes = append(rt.nodes, routeNode{member{addr: addr, ap: ap}, ri.entries})
		}
	}
	if local := ps.localEntries(); len(local) > 0 {
		rt.nodes = append(rt.nodes, routeNode{member{addr: ps.b.selfStr, ap: ps.b.self, self: true}, local})
	}
	slices.SortFunc(rt.nodes, func(a, b routeNode) int { return compareStrings(a.addr, b.addr) })
	rt.key = routeKey{gen, ps.remoteVer, key.local}
	ps.route.Store(rt)
	return rt
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// lookup returns where a topic goes.
func (rt *routeTable) lookup(topic string) *topicRoute {
	rt.mu.Lock()
	r := rt.cache[topic]
	rt.mu.Unlock()
	if r != nil {
		return r
	}
	r = &topicRoute{}
	for _, nd := range rt.nodes {
		plain, anyMatch := false, false
		for _, e := range nd.entries {
			if !matchTopic(e.pattern, topic) {
				continue
			}
			anyMatch = true
			if e.group == "" {
				plain = true
				continue
			}
			i, found := slices.BinarySearchFunc(r.groups, e.group, func(g groupRoute, name string) int { return compareStrings(g.name, name) })
			if !found {
				r.groups = slices.Insert(r.groups, i, groupRoute{name: e.group})
			}
			if ms := r.groups[i].members; len(ms) == 0 || ms[len(ms)-1].addr != nd.addr {
				r.groups[i].members = append(ms, nd.member)
			}
		}
		switch {
		case plain && nd.self:
			r.local = true
		case plain:
			r.plain = append(r.plain, nd.member)
		}
		if anyMatch {
			r.any = append(r.any, nd.member)
		}
	}
	rt.mu.Lock()
	if len(rt.cache) >= maxRouteCache {
		clear(rt.cache)
	}
	rt.cache[topic] = r
	rt.mu.Unlock()
	return r
}
