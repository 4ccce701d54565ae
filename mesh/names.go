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
	m   sync.Map // netip.AddrPort -> string, at most maxNames entries
	num atomic.Int64
}

// name returns the mesh address string of a peer, cached.
func (p *peerNames) name(a netip.AddrPort) string {
	if v, ok := p.m.Load(a); ok {
		return v.(string)
	}
	s := a.String()
	if p.num.Load() < maxNames {
		if _, loaded := p.m.LoadOrStore(a, s); !loaded {
			p.num.Add(1)
		}
	}
	return s
}

// forget drops a peer's cached name (its session ended).
func (p *peerNames) forget(a netip.AddrPort) {
	if _, ok := p.m.LoadAndDelete(a); ok {
		p.num.Add(-1)
	}
}
