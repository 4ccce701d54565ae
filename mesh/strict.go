package mesh

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// strictCheck drops messages from senders MARS does not list, when
// strictCheckForExternal is on.
type strictCheck struct {
	on     bool
	b      *base
	names  *peerNames
	listed func(addr string) bool // the node's MARS view lists addr

	mu     sync.Mutex
	warned map[netip.AddrPort]bool // senders warned about, at most 4096
	drops  atomic.Uint64
}

func newStrictCheck(on bool, b *base, names *peerNames, listed func(string) bool) *strictCheck {
	return &strictCheck{on: on, b: b, names: names, listed: listed, warned: make(map[netip.AddrPort]bool)}
}

// drop reports whether a message from addr must be dropped because
// strictCheckForExternal is on and MARS does not list the sender.
func (s *strictCheck) drop(from netip.AddrPort) bool {
	if !s.on || from == s.b.self {
		return false
	}
	if s.listed(s.names.name(from)) {
		return false
	}
	s.drops.Add(1)
	s.mu.Lock()
	first := !s.warned[from]
	if first && len(s.warned) < 4096 {
		s.warned[from] = true
	}
	s.mu.Unlock()
	if first {
		s.b.log.Warn("mesh: dropping messages from a sender MARS does not list", "from", from)
	}
	return true
}

// StrictDrops counts messages dropped by strictCheckForExternal.
func (n *Node) StrictDrops() uint64 { return n.strict.drops.Load() }
