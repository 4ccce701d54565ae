package meshtest

import "net/netip"

// Cuts between endpoints, by mesh address (a node's GetMyEndPoint, or
// MarsAddr). They hold until Heal, also for a node restarted on the same
// address. Loss, delay and duplication are the in-memory network's
// (Options.Faults, Network).

// Cut drops every packet from one address to another: a one-way
// partition (the other direction still works).
func (c *Cluster) Cut(from, to string) {
	c.t.Helper()
	a, b := c.addr(from), c.addr(to)
	c.fab.change(func() { c.fab.links[[2]netip.AddrPort{a, b}] = true })
}

// Partition drops every packet between a and b, both ways.
func (c *Cluster) Partition(a, b string) {
	c.t.Helper()
	x, y := c.addr(a), c.addr(b)
	c.fab.change(func() {
		c.fab.links[[2]netip.AddrPort{x, y}] = true
		c.fab.links[[2]netip.AddrPort{y, x}] = true
	})
}

// Isolate cuts addr off from every other endpoint, MARS included, both
// ways.
func (c *Cluster) Isolate(addr string) {
	c.t.Helper()
	a := c.addr(addr)
	c.fab.change(func() { c.fab.isolated[a] = true })
}

// Heal removes every cut.
func (c *Cluster) Heal() {
	c.fab.change(func() {
		clear(c.fab.links)
		clear(c.fab.isolated)
	})
}

func (c *Cluster) addr(s string) netip.AddrPort {
	c.t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		c.t.Fatalf("meshtest: %q is not a mesh address: %v", s, err)
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
