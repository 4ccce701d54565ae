package mesh

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// maxNames bounds the cache of peer address strings, so forged sources
// cannot grow it: past it, names are built on every use.
const maxNames = 4096

// peerNames caches the mesh address strings of peers. The zero value is
// ready.
type peerNames struct {
	m    sync.Map // netip.AddrPort -> *peerName, at most maxNames entries
	num  atomic.Int64
	last atomic.Pointer[peerName] // the last one looked up: a burst from one peer skips the map
}

type peerName struct {
	ap netip.AddrPort
	s  string
}

// name returns the mesh address string of a peer, cached. (A name is its
// address's string: an entry that outlives forget is still right.)
func (p *peerNames) name(a netip.AddrPort) string {
	if l := p.last.Load(); l != nil && l.ap == a {
		return l.s
	}
	return p.lookup(a).s
}

// recvName is name for the read goroutine's per-message lookups: it also
// remembers the peer, so that the rest of a burst from it skips the map.
// (Only the read path stores it: goroutines on other cores writing it for
// peers that take turns would share the cache line.)
func (p *peerNames) recvName(a netip.AddrPort) string {
	if l := p.last.Load(); l != nil && l.ap == a {
		return l.s
	}
	pn := p.lookup(a)
	p.last.Store(pn)
	return pn.s
}

func (p *peerNames) lookup(a netip.AddrPort) *peerName {
	if v, ok := p.m.Load(a); ok {
		return v.(*peerName)
	}
	pn := &peerName{ap: a, s: a.String()}
	if p.num.Load() < maxNames {
		if _, loaded := p.m.LoadOrStore(a, pn); !loaded {
			p.num.Add(1)
		}
	}
	return pn
}

// forget drops a peer's cached name (its session ended).
func (p *peerNames) forget(a netip.AddrPort) {
	if _, ok := p.m.LoadAndDelete(a); ok {
		p.num.Add(-1)
	}
	if l := p.last.Load(); l != nil && l.ap == a {
		p.last.CompareAndSwap(l, nil)
	}
}
