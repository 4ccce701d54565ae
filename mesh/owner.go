package mesh

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/marsmesh/marsmesh/mars"
)

// Ownership: which node of a type owns a key (a room, a match, a player),
// by rendezvous (highest-random-weight) hashing over the online nodes of
// the type in the node's view. Every node with the same view gives the
// same answer, with no network call; when a node joins or leaves, only the
// keys it takes or gives move (about 1/N of them). See the package doc,
// "Ownership", for when this is enough and when a lease is needed.
//
// The hash is part of the wire contract, the same in every version: a
// key's hash is xxhash64 of its bytes, a node's is xxhash64 of its mesh
// address, and a node's score for a key is the murmur3 64-bit finalizer of
// their XOR. The highest score owns the key; equal scores go to the lower
// address. Weighted, the score is -w / ln(h), with w the node's weight and
// h = (the top 53 bits of the 64-bit score + 0.5) / 2^53, in (0, 1).

// OwnerOption changes how a node is chosen as a key's owner. Use the same
// options for a type everywhere (Owner, the routing functions, Hold), or
// they disagree.
type OwnerOption struct {
	weight string
}

// WeightedBy weighs each node by its metadata value valueName (set with
// SetNodeValue or WithValues; a number): a node of weight 2 owns about
// twice the keys of one of weight 1. A node without the value, or with a
// value that is not a finite number above 0, owns no key. With equal
// weights the owners are the same as without WeightedBy.
func WeightedBy(valueName string) OwnerOption { return OwnerOption{weight: valueName} }

func ownerOpts(opts []OwnerOption) string {
	w := ""
	for _, o := range opts {
		w = o.weight
	}
	return w
}

// ownerSetKey names one candidate set: a type, and the value weighing it
// ("" for none).
type ownerSetKey struct{ typ, weight string }

// ownerCand is one node that may own keys.
type ownerCand struct {
	addr string
	hash uint64  // xxhash64 of addr
	w    float64 // weight (weighted sets only)
}

// ownerSet is the candidates of one type at one generation of the view,
// sorted by address; it never changes once built.
type ownerSet struct {
	gen      uint64
	weighted bool
	cands    []ownerCand
	hashes   []uint64  // cands[i].hash, dense for the scoring loop
	weights  []float64 // cands[i].w
	sig      uint64    // digest of the candidates and weights: equal sets, equal sig
}

// maxOwnerSets bounds the cached sets of a node: past it the cache starts
// again (a program asking for many distinct types or weights).
const maxOwnerSets = 256

// ownerTable is a node's ownership state: the cached candidate sets,
// replaced whenever the view's generation moves, and the holds.
type ownerTable struct {
	sets    atomic.Pointer[map[ownerSetKey]*ownerSet] // copy on write
	buildMu sync.Mutex

	lookups  spreadCounter // Owner and Owners calls (and the routing functions' picks)
	retries  atomic.Uint64 // calls sent again to the next owner after ErrDraining
	handoffs atomic.Uint64 // holds lost to another node (their onLoss queued)

	holds holdTable // owner_hold.go
}

// spreadCounter is a counter that cores add to at once without sharing a
// cache line: each add goes to the slot its key hash picks.
type spreadCounter struct {
	slots [8]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

func (c *spreadCounter) add(k uint64) { c.slots[k%8].n.Add(1) }

func (c *spreadCounter) load() uint64 {
	var sum uint64
	for i := range c.slots {
		sum += c.slots[i].n.Load()
	}
	return sum
}

// keyHash is a key's hash (see the wire contract above).
func keyHash(key string) uint64 { return xxhash.Sum64String(key) }

// ownerScore is a node's score for a key.
func ownerScore(key, node uint64) uint64 {
	x := key ^ node
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// weightedScore is -w / ln(h), h = s as a number in (0, 1).
func weightedScore(s uint64, w float64) float64 { return -w / math.Log(unitFloat(s)) }

// unitFloat maps s to a number in (0, 1): its top 53 bits, plus a half.
func unitFloat(s uint64) float64 { return (float64(s>>11) + 0.5) / (1 << 53) }

// rank returns the index of the best candidate for key k, skipping those
// whose address is in skip; -1 when none is left.
func (s *ownerSet) rank(k uint64, skip []string) int {
	if s.weighted {
		return s.rankWeighted(k, skip)
	}
	best, bestS := -1, uint64(0)
	for i, h := range s.hashes {
		// cands are sorted by address: on a tie the lower address stays
		if sc := ownerScore(k, h); (best < 0 || sc > bestS) && !s.skipped(i, skip) {
			best, bestS = i, sc
		}
	}
	return best
}

func (s *ownerSet) rankWeighted(k uint64, skip []string) int {
	best, bestW, bound := -1, 0.0, 0.0
	for i, h := range s.hashes {
		sc, w := ownerScore(k, h), s.weights[i]
		// -ln x > 1-x on (0, 1), so w/(1-x) bounds the score from above:
		// when it is below the best (with a margin far wider than any
		// rounding), the candidate cannot win and needs no logarithm.
		if best >= 0 && w < bound*(1-unitFloat(sc)) {
			continue
		}
		if ws := weightedScore(sc, w); (best < 0 || ws > bestW) && !s.skipped(i, skip) {
			best, bestW, bound = i, ws, ws*(1-1e-9)
		}
	}
	return best
}

func (s *ownerSet) skipped(i int, skip []string) bool {
	return len(skip) > 0 && slices.Contains(skip, s.cands[i].addr)
}

// owner returns the owner of key k, skipping the addresses in skip.
func (s *ownerSet) owner(k uint64, skip []string) (string, bool) {
	if i := s.rank(k, skip); i >= 0 {
		return s.cands[i].addr, true
	}
	return "", false
}

// ranked returns up to max candidates in the order they own key k.
func (s *ownerSet) ranked(k uint64, max int) []string {
	var out []string
	for len(out) < max {
		i := s.rank(k, out)
		if i < 0 {
			break
		}
		out = append(out, s.cands[i].addr)
	}
	return out
}

// nodeWeight reads a weight from a node value: a finite number above 0.
func nodeWeight(v interface{}) (float64, bool) {
	var w float64
	switch x := v.(type) {
	case int64:
		w = float64(x)
	case uint64:
		w = float64(x)
	case float64:
		w = x
	case int:
		w = float64(x)
	case float32:
		w = float64(x)
	default:
		return 0, false
	}
	return w, w > 0 && !math.IsInf(w, 0) && !math.IsNaN(w)
}

// buildOwnerSet reads the candidates of k from view at generation gen.
func buildOwnerSet(view *mars.View, k ownerSetKey, gen uint64) *ownerSet {
	addrs := view.OnlineByType(k.typ) // sorted
	cands := make([]ownerCand, 0, len(addrs))
	for _, a := range addrs {
		c := ownerCand{addr: a, w: 1}
		if k.weight != "" {
			v, _ := view.NodeValue(a, k.weight)
			w, ok := nodeWeight(v)
			if !ok {
				continue
			}
			c.w = w
		}
		cands = append(cands, c)
	}
	return newOwnerSet(gen, k.weight != "", cands)
}

// newOwnerSet makes a set of cands (sorted by address), hashing them.
func newOwnerSet(gen uint64, weighted bool, cands []ownerCand) *ownerSet {
	d := xxhash.New()
	s := &ownerSet{gen: gen, weighted: weighted, cands: cands,
		hashes: make([]uint64, len(cands)), weights: make([]float64, len(cands))}
	for i := range cands {
		c := &cands[i]
		c.hash = xxhash.Sum64String(c.addr)
		s.hashes[i], s.weights[i] = c.hash, c.w
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], c.hash)
		binary.LittleEndian.PutUint64(b[8:], math.Float64bits(c.w))
		d.Write(b[:])
	}
	s.sig = d.Sum64()
	return s
}

// ownerSet returns the current candidate set of k, building it if the view
// moved since it was cached.
func (n *Node) ownerSet(k ownerSetKey) *ownerSet {
	view := n.mc.View()
	gen := view.Generation()
	t := &n.own
	if m := t.sets.Load(); m != nil {
		if s := (*m)[k]; s != nil && s.gen == gen {
			return s
		}
	}
	t.buildMu.Lock()
	defer t.buildMu.Unlock()
	gen = view.Generation() // read before the lists: a change meanwhile leaves the set stale, rebuilt next time
	old := t.sets.Load()
	if old != nil {
		if s := (*old)[k]; s != nil && s.gen == gen {
			return s
		}
	}
	s := buildOwnerSet(view, k, gen)
	m := make(map[ownerSetKey]*ownerSet, 8)
	if old != nil && len(*old) < maxOwnerSets {
		for kk, ss := range *old {
			if ss.gen == gen {
				m[kk] = ss
			}
		}
	}
	m[k] = s
	t.sets.Store(&m)
	return s
}

// Owner returns the mesh address of the node that owns key among the
// online nodes of nodeType in this node's view, by rendezvous hashing
// (WeightedBy to weigh them), and false when no such node is online. It
// makes no network call and no allocation once the view's candidates are
// cached (they are rebuilt after each change of the view). Every node with
// the same view gives the same answer; while a change spreads (a node
// joins, drains or dies) two nodes may name different owners for up to a
// sync interval. See the package doc, "Ownership".
func (n *Node) Owner(nodeType, key string, opts ...OwnerOption) (addr string, ok bool) {
	k := keyHash(key)
	n.own.lookups.add(k)
	return n.ownerSet(ownerSetKey{nodeType, ownerOpts(opts)}).owner(k, nil)
}

// Owners returns up to max online nodes of nodeType in the order they own
// key: the owner first, then the node that owns it if the owner leaves,
// and so on (replicas of a room, or where to go next).
func (n *Node) Owners(nodeType, key string, max int, opts ...OwnerOption) []string {
	k := keyHash(key)
	n.own.lookups.add(k)
	return n.ownerSet(ownerSetKey{nodeType, ownerOpts(opts)}).ranked(k, max)
}

// Owner returns the owner of key among the online nodes of nodeType in the
// default node's view (see Node.Owner); false before Setup.
func Owner(nodeType, key string, opts ...OwnerOption) (addr string, ok bool) {
	if n := Default(); n != nil {
		return n.Owner(nodeType, key, opts...)
	}
	return "", false
}

// Owners returns up to max nodes in the order they own key, from the
// default node's view (see Node.Owners); nil before Setup.
func Owners(nodeType, key string, max int, opts ...OwnerOption) []string {
	if n := Default(); n != nil {
		return n.Owners(nodeType, key, max, opts...)
	}
	return nil
}
