package mars

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Node is one node as the local view lists it.
type Node struct {
	Addr        string // mesh address, "host:port"
	Incarnation uint64
	Type        string
	Role        string
	Status      Status                 // the status the node set (Diarkis); StatusOffline also while it is silent
	State       State                  // its membership state (see State)
	EndPoint    string                 // public endpoint, or ""
	Values      map[string]interface{} // metadata; a copy the caller may keep (see View on types)
	Self        bool                   // this is the node the view belongs to
}

// View is a node's local copy of its app's registry, kept in sync with
// MARS by a Client. Every lookup is answered from memory, with no network
// call, and is safe for concurrent use. Node addresses in lists are sorted.
//
// While MARS is unreachable the view keeps its last content (check
// Client.InTouch). Metadata values come back with one Go type per kind,
// whoever reads them and whatever their size: every integer as int64
// (uint64 only above math.MaxInt64), every float as float64, strings and
// binary as string, bools as bool, lists as []interface{} and maps as
// map[string]interface{} (with the same rules inside).
//
// Every node has a membership state (Node.State). Lists meant for sending
// (Online, OnlineByType, OnlineByRole) hold online nodes only; Addrs,
// AddrsByType and AddrsByRole list every state.
type View struct {
	selfAddr string
	selfInc  uint64

	mu       sync.RWMutex
	subs     []func([]NodeEvent) // membership subscribers (Subscribe); called under mu
	subIDs   []*int
	onChange []func() // OnChange callbacks; called under mu
	changeID []*int
	gen      atomic.Uint64 // Generation
	marsInc  uint64
	ver      uint64
	nodes    map[string]*viewNode
	keys     map[string]int16
	syncedAt time.Time // wall clock of the last applied sync

	// Entries kept from a previous MARS incarnation until the new one
	// confirms them (see Client: re-registration grace).
	carriedNodes map[string]bool
	carriedKeys  map[string]bool

	// Indexes, rebuilt after every change.
	addrs    []string
	byType   map[string][]string
	byRole   map[string][]string
	byEP     map[string]string
	types    []string
	online   []string // nodes in StateOnline
	onByType map[string][]string
	onByRole map[string][]string
}

// viewNode is one node of the view: its record and state as MARS lists
// them, and what this node learned ahead of MARS.
type viewNode struct {
	rec          nodeRecord
	values       map[string]interface{}
	mars         State     // as MARS lists it
	drain        bool      // the node told us it drains (this incarnation)
	unreachUntil time.Time // the transport found it dead: offline until then, unless MARS moves first
	state        State     // effective: what lookups and events show
}

func newView(selfAddr string, selfInc uint64) *View {
	v := &View{selfAddr: selfAddr, selfInc: selfInc}
	v.resetLocked()
	return v
}

func (v *View) resetLocked() {
	v.marsInc, v.ver = 0, 0
	v.nodes = make(map[string]*viewNode)
	v.keys = make(map[string]int16)
	v.carriedNodes = make(map[string]bool)
	v.carriedKeys = make(map[string]bool)
	v.reindexLocked()
}

func (v *View) node(n *viewNode) Node {
	m := v.nodeShared(n)
	m.Values = maps.Clone(n.values)
	return m
}

// nodeShared is node without the copy of Values: the map is the view's,
// which it never changes (a change of values replaces it).
func (v *View) nodeShared(n *viewNode) Node {
	return Node{
		Addr: n.rec.Addr, Incarnation: n.rec.Inc, Type: n.rec.Type, Role: n.rec.Role,
		Status: n.rec.Status, State: n.state, EndPoint: n.rec.EndPoint, Values: n.values,
		Self: n.rec.Addr == v.selfAddr && n.rec.Inc == v.selfInc,
	}
}

// Generation counts the changes of the view's nodes: it grows whenever a
// node appears or goes, changes state, or changes its record (type, role,
// status, endpoint, values), and only then (not for shared data). A cache
// of something computed from the nodes is current while it stays the same.
func (v *View) Generation() uint64 { return v.gen.Load() }

// OnChange registers f, called after every change that grows Generation.
// f runs while the view is locked: it must return at once and must not
// call the View (post to another goroutine). The returned function removes
// it.
func (v *View) OnChange(f func()) (cancel func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := new(int)
	v.onChange = append(v.onChange, f)
	v.changeID = append(v.changeID, id)
	return func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if i := slices.Index(v.changeID, id); i >= 0 {
			v.onChange = slices.Delete(v.onChange, i, i+1)
			v.changeID = slices.Delete(v.changeID, i, i+1)
		}
	}
}

// Nodes lists every node, sorted by address.
func (v *View) Nodes() []Node {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Node, 0, len(v.addrs))
	for _, a := range v.addrs {
		out = append(out, v.node(v.nodes[a]))
	}
	return out
}

// Node returns the node with a mesh address.
func (v *View) Node(addr string) (Node, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	n := v.nodes[addr]
	if n == nil {
		return Node{}, false
	}
	return v.node(n), true
}

// NodeByEndPoint returns the node with a public endpoint.
func (v *View) NodeByEndPoint(endPoint string) (Node, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	a, ok := v.byEP[endPoint]
	if !ok {
		return Node{}, false
	}
	return v.node(v.nodes[a]), true
}

// Addrs lists the mesh addresses of every node (any state) except those
// in ignore.
func (v *View) Addrs(ignore ...string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return without(v.addrs, ignore)
}

// Online lists the mesh addresses of the online nodes except those in
// ignore: the nodes to send to.
func (v *View) Online(ignore ...string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return without(v.online, ignore)
}

func without(list, ignore []string) []string {
	out := make([]string, 0, len(list))
	for _, a := range list {
		if !slices.Contains(ignore, a) {
			out = append(out, a)
		}
	}
	return out
}

// OnlineByType lists the online nodes of a type.
func (v *View) OnlineByType(typ string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return slices.Clone(v.onByType[typ])
}

// OnlineByRole lists the online nodes of a role.
func (v *View) OnlineByRole(role string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return slices.Clone(v.onByRole[role])
}

// State returns the membership state of the node at a mesh address
// (StateNone when the view does not list it).
func (v *View) State(addr string) State {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if n := v.nodes[addr]; n != nil {
		return n.state
	}
	return StateNone
}

// AddrsByType lists the nodes of a type, whatever their status.
func (v *View) AddrsByType(typ string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return slices.Clone(v.byType[typ])
}

// AddrsByRole lists the nodes of a role, whatever their status.
func (v *View) AddrsByRole(role string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return slices.Clone(v.byRole[role])
}

// Types lists the node types present, sorted.
func (v *View) Types() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return slices.Clone(v.types)
}

// selfState is the state the view lists the node it belongs to in.
func (v *View) selfState() State {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if n := v.nodes[v.selfAddr]; n != nil && n.rec.Inc == v.selfInc {
		return n.state
	}
	return StateNone
}

// selfMarsState is the state MARS lists the node the view belongs to in.
func (v *View) selfMarsState() State {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if n := v.nodes[v.selfAddr]; n != nil && n.rec.Inc == v.selfInc {
		return n.mars
	}
	return StateNone
}

// NodeValue returns one metadata value of a node. A list or map value is
// the view's own: do not modify it.
func (v *View) NodeValue(addr, name string) (interface{}, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	n := v.nodes[addr]
	if n == nil {
		return nil, false
	}
	val, ok := n.values[name]
	return val, ok
}

// SharedData returns the value of a shared key.
func (v *View) SharedData(key string) (int16, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	val, ok := v.keys[key]
	return val, ok
}

// AllSharedData returns a copy of every shared key and value.
func (v *View) AllSharedData() map[string]int16 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return maps.Clone(v.keys)
}

// Len is the number of nodes listed.
func (v *View) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.nodes)
}

// Version returns the MARS incarnation and the app version the view is at.
func (v *View) Version() (marsInc, version uint64) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.marsInc, v.ver
}

func (v *View) state() (marsInc, version uint64, syncedAt time.Time) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.marsInc, v.ver, v.syncedAt
}

func (v *View) sharedSnapshot() []kv {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]kv, 0, len(v.keys))
	for k, val := range v.keys {
		out = append(out, kv{k, val})
	}
	return out
}

// totalLocked is the digest total of the view without its carried entries
// (what MARS lists).
func (v *View) totalLocked() uint64 {
	var t uint64
	var buf []byte
	for a, n := range v.nodes {
		if !v.carriedNodes[a] {
			buf = appendRecord(buf[:0], &n.rec)
			t += nonZero(nodeEntryHash(buf, n.mars))
		}
	}
	for k, val := range v.keys {
		if !v.carriedKeys[k] {
			t += keyEntryHash(k, val)
		}
	}
	return t
}

// digest returns the digest of the view (digest.go) at the bucket count
// its size calls for.
func (v *View) digest() *digest {
	v.mu.RLock()
	defer v.mu.RUnlock()
	d := newDigest(digestBuckets(len(v.nodes) + len(v.keys)))
	var buf []byte
	for a, n := range v.nodes {
		buf = appendRecord(buf[:0], &n.rec)
		d.add(nodeNameHash(a), nonZero(nodeEntryHash(buf, n.mars)))
	}
	for k, val := range v.keys {
		d.add(keyNameHash(k), keyEntryHash(k, val))
	}
	return &d
}
