package mars

import (
	"slices"
	"sort"
	"time"
)

// appState is everything MARS knows about one app name (namespace). It is
// guarded by the server's mutex.
//
// Versions: every change in the app (a node added, changed, gone offline or
// removed; a shared key set or removed) takes the next version of a clock
// the server shares between its apps, so an app's versions increase and an
// app that is forgotten (empty) and created again never reuses a version a
// node may still hold: its horizon starts past every version issued so far. Each
// live entity and each tombstone remembers the version of its last change,
// and the change log lists (version, entity) in version order, so the
// changes since a node's version are found by binary search and cost
// O(changes), not O(nodes). Obsolete log entries (an entity changed again
// later) are skipped when read and dropped when the log is compacted.
//
// Tombstones remember removed nodes and keys for tombstoneTTL so a delta can
// say "gone"; when one expires, horizon rises to its version, and a node
// whose version is below the horizon gets a full snapshot instead.
type appState struct {
	name  string
	clock *uint64 // the server's version clock
	// onState hears every change of a node's listed state (MARS's log):
	// the entry (its listed state already updated), the incarnation and
	// state listed before, and why it went (when gone).
	onState   func(a *appState, e *nodeEntry, oldInc uint64, old State, gone byte)
	ver       uint64 // the app's latest version
	nodes     map[string]*nodeEntry
	guests    map[string]*nodeEntry
	keys      map[string]keyEntry
	goneNodes map[string]goneNode // tombstones: address -> removal
	goneKeys  map[string]uint64
	tombs     []tomb // removal order (= version order)
	tombHead  int
	horizon   uint64
	log       []logEntry

	fullVer   uint64 // version fullParts was built at
	fullAt    int64  // server clock when it was built
	fullParts [][]byte

	dig         digest // digest of the nodes and keys at maxDigestBuckets, kept per change (digest.go)
	digGen      uint64 // counts the changes of dig (the caches below are of one)
	digFold     digest // dig folded to fewer buckets (digestAt)
	digFoldGen  uint64
	bucketParts [][]byte // the last body of differing buckets (bucketBody)
	bucketKey   string
}

// nodeEntry is one node (or guest) of an app.
type nodeEntry struct {
	addr     string
	inc      uint64
	prevInc  uint64 // the incarnation this one replaced; its reports are refused
	info     nodeInfo
	alive    bool  // reported within OfflineAfter and has not left
	life     State // what the node declares: joining, online or draining
	lastSeen int64 // server clock, ns
	ver      uint64
	ack      uint64 // every change of this incarnation up to ack has been applied
	durable  uint64 // with DataDir: up to here the data file holds them too
	unsaved  bool   // with DataDir: changes past durable wait for a save
	rec      []byte // the node's encoded record, rebuilt on every change
	listed   State  // the state last listed (for the log of changes)
	listedAt uint64 // the incarnation last listed
	owner    uint64 // with a Store: the replica that serves the node
	hash     uint64 // digest hash of rec and listed state; 0: not counted (digest.go)
	bucketAt int64  // server clock when its differing buckets were last sent (server_digest.go)
	nameHash uint64
}

func (e *nodeEntry) status() Status {
	if !e.alive {
		return StatusOffline
	}
	return e.info.Status
}

// state is the node's membership state as MARS lists it.
func (e *nodeEntry) state() State {
	switch {
	case !e.alive:
		return StateOffline
	case e.life == StateJoining || e.life == StateDraining:
		return e.life
	}
	return StateOnline
}

// goneNode is the tombstone of a removed node: the version of its removal
// and why (goneRemoved, goneLeft).
type goneNode struct {
	ver uint64
	why byte
}

func (e *nodeEntry) encode() {
	e.rec = appendRecord(e.rec[:0], &nodeRecord{
		Addr: e.addr, Inc: e.inc, Type: e.info.Type, Role: e.info.Role,
		Status: e.status(), EndPoint: e.info.EndPoint, Values: e.info.Values,
	})
}

type keyEntry struct {
	val  int16
	ver  uint64
	hash uint64 // digest hash of the key and value
}

type logEntry struct {
	ver  uint64
	key  string // node address or shared-data key
	node bool
}

type tomb struct {
	ver  uint64
	at   int64 // server clock, ns
	key  string
	node bool
}

func newAppState(name string, clock *uint64) *appState {
	*clock++ // reserve a version: the app starts there, past any older view
	return &appState{
		dig:       newDigest(maxDigestBuckets),
		name:      name,
		clock:     clock,
		ver:       *clock,
		horizon:   *clock,
		nodes:     make(map[string]*nodeEntry),
		guests:    make(map[string]*nodeEntry),
		keys:      make(map[string]keyEntry),
		goneNodes: make(map[string]goneNode),
		goneKeys:  make(map[string]uint64),
	}
}

// newAppStateAt returns an app of a server over a Store, whose versions
// are the store's revisions: it starts at (and has seen everything up to)
// revision v.
func newAppStateAt(name string, v uint64) *appState {
	return &appState{
		dig:       newDigest(maxDigestBuckets),
		name:      name,
		ver:       v,
		horizon:   v,
		nodes:     make(map[string]*nodeEntry),
		guests:    make(map[string]*nodeEntry),
		keys:      make(map[string]keyEntry),
		goneNodes: make(map[string]goneNode),
		goneKeys:  make(map[string]uint64),
	}
}

// bumpAt logs a change at version v (never below a logged one).
func (a *appState) bumpAt(v uint64, key string, node bool) uint64 {
	a.ver = max(a.ver, v)
	a.log = append(a.log, logEntry{ver: v, key: key, node: node})
	return v
}

// nodeChanged records a change of e (new, new info, liveness).
func (a *appState) nodeChanged(e *nodeEntry) {
	*a.clock++
	a.nodeChangedAt(e, *a.clock)
}

func (a *appState) nodeChangedAt(e *nodeEntry, v uint64) {
	e.ver = a.bumpAt(v, e.addr, true)
	e.encode()
	if e.hash != 0 {
		a.digAdd(e.nameHash, -e.hash)
	}
	e.nameHash, e.hash = nodeNameHash(e.addr), nonZero(nodeEntryHash(e.rec, e.state()))
	a.digAdd(e.nameHash, e.hash)
	delete(a.goneNodes, e.addr)
	a.noteState(e, e.state(), 0)
}

// noteState records e's listed state and tells onState of a change.
func (a *appState) noteState(e *nodeEntry, st State, gone byte) {
	oldInc, old := e.listedAt, e.listed
	e.listedAt, e.listed = e.inc, st
	if (old != st || oldInc != e.inc) && a.onState != nil {
		a.onState(a, e, oldInc, old, gone)
	}
}

func (a *appState) addNode(e *nodeEntry) {
	a.nodes[e.addr] = e
	a.nodeChanged(e)
}

func (a *appState) removeNode(addr string, why byte, now int64) {
	*a.clock++
	a.removeNodeAt(addr, why, *a.clock, now)
}

func (a *appState) removeNodeAt(addr string, why byte, v uint64, now int64) {
	if e := a.nodes[addr]; e != nil {
		a.noteState(e, StateGone, why)
		if e.hash != 0 {
			a.digAdd(e.nameHash, -e.hash)
			e.hash = 0
		}
	}
	delete(a.nodes, addr)
	a.bumpAt(v, addr, true)
	a.goneNodes[addr] = goneNode{ver: v, why: why}
	a.tombs = append(a.tombs, tomb{ver: v, at: now, key: addr, node: true})
}

// setKey sets a shared key; it reports whether anything changed.
func (a *appState) setKey(key string, val int16) bool {
	if e, ok := a.keys[key]; ok && e.val == val {
		return false
	}
	*a.clock++
	a.setKeyAt(key, val, *a.clock)
	return true
}

func (a *appState) setKeyAt(key string, val int16, v uint64) {
	nh := keyNameHash(key)
	if old, ok := a.keys[key]; ok {
		a.digAdd(nh, -old.hash)
	}
	h := keyEntryHash(key, val)
	a.digAdd(nh, h)
	a.keys[key] = keyEntry{val: val, ver: a.bumpAt(v, key, false), hash: h}
	delete(a.goneKeys, key)
}

// removeKey removes a shared key; it reports whether it existed.
func (a *appState) removeKey(key string, now int64) bool {
	if _, ok := a.keys[key]; !ok {
		return false
	}
	*a.clock++
	a.removeKeyAt(key, *a.clock, now)
	return true
}

func (a *appState) removeKeyAt(key string, v uint64, now int64) {
	if old, ok := a.keys[key]; ok {
		a.digAdd(keyNameHash(key), -old.hash)
	}
	delete(a.keys, key)
	a.bumpAt(v, key, false)
	a.goneKeys[key] = v
	a.tombs = append(a.tombs, tomb{ver: v, at: now, key: key})
}

// expireTombs forgets tombstones older than ttl, and the oldest ones while
// there are more than max, raising the horizon past them.
func (a *appState) expireTombs(now int64, ttl int64, maxTombs int) {
	for a.tombHead < len(a.tombs) {
		t := a.tombs[a.tombHead]
		live := len(a.goneNodes) + len(a.goneKeys)
		if now-t.at < ttl && live <= maxTombs {
			break
		}
		if t.node {
			if g, ok := a.goneNodes[t.key]; ok && g.ver == t.ver {
				delete(a.goneNodes, t.key)
				a.horizon = max(a.horizon, t.ver)
			}
		} else if v, ok := a.goneKeys[t.key]; ok && v == t.ver {
			delete(a.goneKeys, t.key)
			a.horizon = max(a.horizon, t.ver)
		}
		a.tombs[a.tombHead] = tomb{}
		a.tombHead++
	}
	if a.tombHead == len(a.tombs) {
		a.tombs, a.tombHead = a.tombs[:0], 0
	} else if a.tombHead > 1024 && 2*a.tombHead > len(a.tombs) {
		n := copy(a.tombs, a.tombs[a.tombHead:])
		clear(a.tombs[n:])
		a.tombs, a.tombHead = a.tombs[:n], 0
	}
}

// live is the number of entities the log must keep an entry for.
func (a *appState) live() int {
	return len(a.nodes) + len(a.keys) + len(a.goneNodes) + len(a.goneKeys)
}

// compact rebuilds the change log from the live entities when obsolete
// entries dominate it.
func (a *appState) compact() {
	if len(a.log) <= 2*a.live()+1024 {
		return
	}
	log := make([]logEntry, 0, a.live()+64)
	for addr, e := range a.nodes {
		log = append(log, logEntry{ver: e.ver, key: addr, node: true})
	}
	for addr, g := range a.goneNodes {
		log = append(log, logEntry{ver: g.ver, key: addr, node: true})
	}
	for k, e := range a.keys {
		log = append(log, logEntry{ver: e.ver, key: k})
	}
	for k, v := range a.goneKeys {
		log = append(log, logEntry{ver: v, key: k})
	}
	slices.SortFunc(log, func(x, y logEntry) int {
		switch {
		case x.ver < y.ver:
			return -1
		case x.ver > y.ver:
			return 1
		}
		return 0
	})
	a.log = log
}

func (a *appState) empty() bool {
	return len(a.nodes) == 0 && len(a.guests) == 0 && len(a.keys) == 0 &&
		len(a.goneNodes) == 0 && len(a.goneKeys) == 0
}

// needsFull reports whether a node whose view is at version v (of MARS
// incarnation inc, compared with ours) must get a full snapshot.
// top is the newest version a node may hold (the app's, or with a Store
// the store revision the server's copy is at).
func (a *appState) needsFull(sameInc bool, v, top uint64) bool {
	return !sameInc || v == 0 || v > top || v < a.horizon
}

// delta returns the body parts of the changes since version v, or ok=false
// when a full snapshot is cheaper (or required).
func (a *appState) delta(v uint64) (parts [][]byte, ok bool) {
	i := sort.Search(len(a.log), func(i int) bool { return a.log[i].ver > v })
	pending := a.log[i:]
	if len(pending) == 0 {
		return [][]byte{nil}, true
	}
	if len(pending) > len(a.nodes)+len(a.keys)+32 {
		return nil, false // the delta would be about as large as a full snapshot
	}
	var b bodyBuilder
	for _, l := range pending {
		if l.node {
			if e := a.nodes[l.key]; e != nil && e.ver == l.ver {
				b.addNode(e)
			} else if g, ok := a.goneNodes[l.key]; ok && g.ver == l.ver {
				b.gone = append(b.gone, l.key)
				b.goneWhy = append(b.goneWhy, g.why)
			}
		} else {
			if e, ok := a.keys[l.key]; ok && e.ver == l.ver {
				b.keys = append(b.keys, kv{l.key, e.val})
			} else if g, ok := a.goneKeys[l.key]; ok && g == l.ver {
				b.dropped = append(b.dropped, l.key)
			}
		}
	}
	return b.build(), true
}

// full returns the body parts of a full snapshot and the version they are
// at. A snapshot is built at most once per version, and is reused for
// fullReuse even when newer changes arrived (the node catches up with a
// delta on its next report) unless the asking node's view (at version
// seen) is already newer: a burst of registrations, where every
// registration is a new version, then costs one build per fullReuse, not
// one per node.
func (a *appState) full(now int64, seen uint64) ([][]byte, uint64) {
	if a.fullParts != nil && (a.fullVer == a.ver || now-a.fullAt < fullReuse && a.fullVer >= seen) {
		return a.fullParts, a.fullVer
	}
	var b bodyBuilder
	b.nodes = make([][]byte, 0, len(a.nodes))
	b.states = make([]State, 0, len(a.nodes))
	for _, e := range a.nodes {
		b.addNode(e)
	}
	b.keys = make([]kv, 0, len(a.keys))
	for k, e := range a.keys {
		b.keys = append(b.keys, kv{k, e.val})
	}
	a.fullParts, a.fullVer, a.fullAt = b.build(), a.ver, now
	return a.fullParts, a.fullVer
}

// fullReuse is how long a full snapshot may be served after newer changes.
const fullReuse = int64(200 * time.Millisecond)

// bodyBuilder encodes the body of a sync, split into parts of about
// syncPartSize bytes. Every part carries the six body arrays; states and
// goneWhy pair up with the part's nodes and gone.
type bodyBuilder struct {
	nodes   [][]byte // encoded records
	states  []State  // one per record
	gone    []string
	goneWhy []byte // one per gone
	keys    []kv
	dropped []string
}

func (b *bodyBuilder) addNode(e *nodeEntry) {
	b.nodes = append(b.nodes, e.rec)
	b.states = append(b.states, e.state())
}

func (b *bodyBuilder) build() [][]byte {
	if len(b.nodes)+len(b.gone)+len(b.keys)+len(b.dropped) == 0 {
		return [][]byte{nil}
	}
	return b.buildAll()
}

// buildAll is build, but an empty body is one part of six empty arrays.
func (b *bodyBuilder) buildAll() [][]byte {
	var parts [][]byte
	nodes, gone, keys, dropped := b.nodes, b.gone, b.keys, b.dropped
	states, goneWhy := b.states, b.goneWhy
	for len(nodes)+len(gone)+len(keys)+len(dropped) > 0 || parts == nil {
		size := 0
		cut := func(n int, each func(i int) int) int { // how many items fit
			i := 0
			for ; i < n && (size < syncPartSize || i == 0 && size == 0); i++ {
				size += each(i)
			}
			return i
		}
		nn := cut(len(nodes), func(i int) int { return len(nodes[i]) })
		ng := cut(len(gone), func(i int) int { return len(gone[i]) + 2 })
		nk := cut(len(keys), func(i int) int { return len(keys[i].Key) + 4 })
		nd := cut(len(dropped), func(i int) int { return len(dropped[i]) + 2 })
		p := make([]byte, 0, size+32)
		p = appendArrayLen(p, nn)
		for _, r := range nodes[:nn] {
			p = append(p, r...)
		}
		p = appendArrayLen(p, ng)
		for _, g := range gone[:ng] {
			p = appendString(p, g)
		}
		p = appendMapLen(p, nk)
		for _, e := range keys[:nk] {
			p = appendString(p, e.Key)
			p = appendInt(p, int64(e.Val))
		}
		p = appendArrayLen(p, nd)
		for _, d := range dropped[:nd] {
			p = appendString(p, d)
		}
		p = appendArrayLen(p, nn)
		for _, st := range states[:nn] {
			p = appendUint(p, uint64(st))
		}
		p = appendArrayLen(p, ng)
		for _, w := range goneWhy[:ng] {
			p = appendUint(p, uint64(w))
		}
		parts = append(parts, p)
		nodes, gone, keys, dropped = nodes[nn:], gone[ng:], keys[nk:], dropped[nd:]
		states, goneWhy = states[nn:], goneWhy[ng:]
	}
	return parts
}
