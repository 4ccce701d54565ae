package mars

import (
	"bytes"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Node is one node as the local view lists it.
type Node struct {
	Addr        string // mesh address, "host:port"
	Incarnation uint64
	Type        string
	Role        string
	Status      Status
	EndPoint    string                 // public endpoint, or ""
	Values      map[string]interface{} // metadata; a copy the caller may keep
	Self        bool                   // this is the node the view belongs to
}

// View is a node's local copy of its app's registry, kept in sync with
// MARS by a Client. Every lookup is answered from memory, with no network
// call, and is safe for concurrent use. Node addresses in lists are sorted.
//
// While MARS is unreachable the view keeps its last content (check
// Client.InTouch). Metadata values are decoded with msgpack's loose
// interface rules: integers come back as int64 or uint64, floats as
// float64, binary as string, nested maps as map[string]interface{}.
type View struct {
	selfAddr string
	selfInc  uint64

	mu       sync.RWMutex
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
	addrs  []string
	byType map[string][]string
	byRole map[string][]string
	byEP   map[string]string
	types  []string
}

type viewNode struct {
	rec    nodeRecord
	values map[string]interface{}
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
	return Node{
		Addr: n.rec.Addr, Incarnation: n.rec.Inc, Type: n.rec.Type, Role: n.rec.Role,
		Status: n.rec.Status, EndPoint: n.rec.EndPoint, Values: maps.Clone(n.values),
		Self: n.rec.Addr == v.selfAddr && n.rec.Inc == v.selfInc,
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

// Addrs lists the mesh addresses of every node except those in ignore.
func (v *View) Addrs(ignore ...string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.addrs))
	for _, a := range v.addrs {
		if !slices.Contains(ignore, a) {
			out = append(out, a)
		}
	}
	return out
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

// NodeValue returns one metadata value of a node.
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

// keyChange is one shared-data event to deliver after the view is unlocked.
type keyChange struct {
	key     string
	val     int16
	removed bool
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
	var changes []keyChange
	dirty := false
	if full {
		if h.MarsInc == v.marsInc && h.To < v.ver {
			return nil, false // older than what we hold
		}
		fresh := make(map[string]*viewNode, len(b.Nodes))
		for i := range b.Nodes {
			fresh[b.Nodes[i].Addr] = v.nodeFrom(&b.Nodes[i])
		}
		freshKeys := make(map[string]int16, len(b.Keys))
		for _, e := range b.Keys {
			freshKeys[e.Key] = e.Val
		}
		clear(v.carriedNodes)
		clear(v.carriedKeys)
		for a, n := range v.nodes {
			if _, ok := fresh[a]; !ok && carry {
				fresh[a] = n
				v.carriedNodes[a] = true
			}
		}
		for k, old := range v.keys {
			nv, ok := freshKeys[k]
			switch {
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
		v.nodes, v.keys, dirty = fresh, freshKeys, true
	} else {
		for i := range b.Nodes {
			n := &b.Nodes[i]
			v.nodes[n.Addr] = v.nodeFrom(n)
			delete(v.carriedNodes, n.Addr)
			dirty = true
		}
		for _, a := range b.Gone {
			if _, ok := v.nodes[a]; ok {
				delete(v.nodes, a)
				delete(v.carriedNodes, a)
				dirty = true
			}
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
	if dirty {
		v.reindexLocked()
	}
	return changes, true
}

// endGrace drops the carried entries the new MARS never confirmed.
func (v *View) endGrace() []keyChange {
	v.mu.Lock()
	defer v.mu.Unlock()
	var changes []keyChange
	for a := range v.carriedNodes {
		delete(v.nodes, a)
	}
	for k := range v.carriedKeys {
		delete(v.keys, k)
		changes = append(changes, keyChange{key: k, removed: true})
	}
	if len(v.carriedNodes) > 0 {
		v.reindexLocked()
	}
	clear(v.carriedNodes)
	clear(v.carriedKeys)
	return changes
}

// forget empties the view (the node moved to another app); the next full
// sync fills it again and reports every key as changed.
func (v *View) forget() []keyChange {
	v.mu.Lock()
	defer v.mu.Unlock()
	var changes []keyChange
	for k := range v.keys {
		changes = append(changes, keyChange{key: k, removed: true})
	}
	v.resetLocked()
	return changes
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

// decodeValues decodes a metadata map that checkValues accepted.
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
	return m
}

func (v *View) reindexLocked() {
	v.addrs = v.addrs[:0]
	v.byType = make(map[string][]string)
	v.byRole = make(map[string][]string)
	v.byEP = make(map[string]string)
	for a := range v.nodes {
		v.addrs = append(v.addrs, a)
	}
	slices.Sort(v.addrs)
	for _, a := range v.addrs {
		r := &v.nodes[a].rec
		v.byType[r.Type] = append(v.byType[r.Type], a)
		v.byRole[r.Role] = append(v.byRole[r.Role], a)
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
}
