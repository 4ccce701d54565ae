package mesh

import (
	"net/netip"
	"testing"
)

// Hostile: state that forged sources or IDs could grow without bound.

// TestNameCacheBounded: names of 20,000 distinct (forged) sources leave at
// most maxNames cached, and names stay right past the bound.
func TestNameCacheBounded(t *testing.T) {
	n := &Node{node: &node{names: new(peerNames)}}
	for i := range 20000 {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 7000)
		if got := n.names.name(a); got != a.String() {
			t.Fatalf("name(%v) = %q", a, got)
		}
	}
	cached := 0
	n.names.m.Range(func(any, any) bool { cached++; return true })
	if cached > maxNames || n.names.num.Load() != int64(cached) {
		t.Fatalf("%d names cached (counted %d), limit %d", cached, n.names.num.Load(), maxNames)
	}
	a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), 7000)
	n.names.forget(a)
	if n.names.num.Load() != int64(cached-1) {
		t.Fatal("forgetName did not uncount")
	}
}

// TestSeenGenerations: fan-out IDs are remembered for at least seenTTL on
// the node's monotonic clock, forgotten by 2*seenTTL, and one generation
// never holds more than maxSeen IDs.
func TestSeenGenerations(t *testing.T) {
	var now int64
	var f fanoutState
	f.init(func() int64 { return now })
	if !f.firstSight(1) || f.firstSight(1) {
		t.Fatal("first sight")
	}
	now += int64(seenTTL) - 1
	if f.firstSight(1) {
		t.Fatal("forgotten before seenTTL")
	}
	now += int64(seenTTL) // swaps: 1 is in prev
	if f.firstSight(1) {
		t.Fatal("forgotten right after a swap")
	}
	now += int64(seenTTL) // swaps again: 1 is gone
	if !f.firstSight(1) {
		t.Fatal("remembered past 2*seenTTL")
	}
	for i := range uint64(3 * maxSeen) {
		f.firstSight(i + 100)
	}
	if len(f.cur) > maxSeen || len(f.prev) > maxSeen {
		t.Fatalf("generations of %d and %d IDs, limit %d", len(f.cur), len(f.prev), maxSeen)
	}
}

// TestNameCacheLast: names stay right when lookups alternate between
// peers (the last-looked-up entry changes each time) and after forget.
func TestNameCacheLast(t *testing.T) {
	var p peerNames
	a := netip.MustParseAddrPort("127.0.0.1:7000")
	b := netip.MustParseAddrPort("[::1]:7001")
	for range 3 {
		if p.recvName(a) != a.String() || p.recvName(b) != b.String() || p.name(b) != b.String() || p.name(a) != a.String() {
			t.Fatal("wrong name")
		}
	}
	p.recvName(b)
	p.forget(b)
	if l := p.last.Load(); l != nil && l.ap == b {
		t.Fatal("forget left the peer as the last looked up")
	}
	if p.recvName(b) != b.String() || p.name(a) != a.String() {
		t.Fatal("wrong name after forget")
	}
}
