// Package faultnet is an in-memory UDP network for tests. Its Conn
// implements net.PacketConn (plus the netip fast path rudp uses), and the
// Network injects loss, duplication, reordering, delay and partitions on
// the way, with no root and no kernel features. Randomness comes from a
// seed, so a failing run can be repeated.
package faultnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Faults applies to packets on a link. Probabilities are in [0, 1].
type Faults struct {
	Loss      float64       // drop the packet
	Duplicate float64       // deliver it twice
	Reorder   float64       // hold it back by ReorderDelay so later packets pass it
	Delay     time.Duration // fixed one-way delay
	Jitter    time.Duration // extra uniform random delay in [0, Jitter)
	// ReorderDelay is how long a reordered packet is held. Default 2 ms.
	ReorderDelay time.Duration
}

// Network connects Conns by address.
type Network struct {
	mu        sync.Mutex
	rng       *rand.Rand
	conns     map[netip.AddrPort]*Conn
	faults    Faults
	links     map[[2]netip.AddrPort]Faults
	cut       map[[2]netip.AddrPort]bool
	nextPort  uint16
	queueSize int

	Sent, Dropped, Duplicated, Reordered atomic.Uint64
}

// New returns an empty network whose random choices follow seed.
func New(seed uint64) *Network {
	return &Network{
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		conns:     make(map[netip.AddrPort]*Conn),
		links:     make(map[[2]netip.AddrPort]Faults),
		cut:       make(map[[2]netip.AddrPort]bool),
		nextPort:  20000,
		queueSize: 8192,
	}
}

// SetFaults sets the faults of every link without its own setting.
func (n *Network) SetFaults(f Faults) {
	n.mu.Lock()
	n.faults = f
	n.mu.Unlock()
}

// SetLinkFaults sets the faults of packets from a to b.
func (n *Network) SetLinkFaults(from, to netip.AddrPort, f Faults) {
	n.mu.Lock()
	n.links[[2]netip.AddrPort{from, to}] = f
	n.mu.Unlock()
}

// Partition drops every packet between a and b, both ways, until Heal.
func (n *Network) Partition(a, b netip.AddrPort) {
	n.mu.Lock()
	n.cut[[2]netip.AddrPort{a, b}] = true
	n.cut[[2]netip.AddrPort{b, a}] = true
	n.mu.Unlock()
}

// Heal undoes Partition.
func (n *Network) Heal(a, b netip.AddrPort) {
	n.mu.Lock()
	delete(n.cut, [2]netip.AddrPort{a, b})
	delete(n.cut, [2]netip.AddrPort{b, a})
	n.mu.Unlock()
}

// Inject delivers b to the endpoint at to as if from had sent it, with no
// faults applied: a forged source address, for hostile tests.
func (n *Network) Inject(from, to netip.AddrPort, b []byte) {
	n.mu.Lock()
	dst := n.conns[to]
	n.mu.Unlock()
	if dst != nil {
		dst.enqueue(packet{from: from, data: append([]byte(nil), b...)})
	}
}

// Listen creates an endpoint at addr ("ip:port"); port 0 picks a free one.
func (n *Network) Listen(addr string) (*Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen %q: %w", addr, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if ap.Port() == 0 {
		for {
			n.nextPort++
			cand := netip.AddrPortFrom(ap.Addr(), n.nextPort)
			if n.conns[cand] == nil {
				ap = cand
				break
			}
		}
	}
	if n.conns[ap] != nil {
		return nil, fmt.Errorf("faultnet: listen %s: address already in use", ap)
	}
	c := &Conn{net: n, addr: ap, queue: make(chan packet, n.queueSize), done: make(chan struct{})}
	n.conns[ap] = c
	return c, nil
}

type packet struct {
	from netip.AddrPort
	data []byte
}

// send routes one packet through the faults of its link.
func (n *Network) send(from, to netip.AddrPort, b []byte) {
	n.Sent.Add(1)
	n.mu.Lock()
	dst := n.conns[to]
	f, ok := n.links[[2]netip.AddrPort{from, to}]
	if !ok {
		f = n.faults
	}
	if dst == nil || n.cut[[2]netip.AddrPort{from, to}] || (f.Loss > 0 && n.rng.Float64() < f.Loss) {
		n.mu.Unlock()
		n.Dropped.Add(1)
		return
	}
	copies := 1
	if f.Duplicate > 0 && n.rng.Float64() < f.Duplicate {
		copies = 2
		n.Duplicated.Add(1)
	}
	delays := make([]time.Duration, copies)
	for i := range delays {
		d := f.Delay
		if f.Jitter > 0 {
			d += time.Duration(n.rng.Int64N(int64(f.Jitter)))
		}
		if f.Reorder > 0 && n.rng.Float64() < f.Reorder {
			rd := f.ReorderDelay
			if rd == 0 {
				rd = 2 * time.Millisecond
			}
			d += rd
			n.Reordered.Add(1)
		}
		delays[i] = d
	}
	n.mu.Unlock()
	for _, d := range delays {
		p := packet{from: from, data: append([]byte(nil), b...)}
		if d <= 0 {
			dst.enqueue(p)
		} else {
			time.AfterFunc(d, func() { dst.enqueue(p) })
		}
	}
}

func (n *Network) remove(c *Conn) {
	n.mu.Lock()
	if n.conns[c.addr] == c {
		delete(n.conns, c.addr)
	}
	n.mu.Unlock()
}

// Conn is one endpoint of a Network.
type Conn struct {
	net   *Network
	addr  netip.AddrPort
	queue chan packet
	done  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	deadline time.Time
	thawed   chan struct{} // non-nil while frozen; closed by Thaw
}

// Freeze stops the endpoint's reads, as if its process were stopped:
// packets queue (and drop once the queue is full) until Thaw.
func (c *Conn) Freeze() {
	c.mu.Lock()
	if c.thawed == nil {
		c.thawed = make(chan struct{})
	}
	c.mu.Unlock()
}

// Thaw lets reads go on after Freeze.
func (c *Conn) Thaw() {
	c.mu.Lock()
	if c.thawed != nil {
		close(c.thawed)
		c.thawed = nil
	}
	c.mu.Unlock()
}

func (c *Conn) enqueue(p packet) {
	select {
	case <-c.done:
	case c.queue <- p:
	default:
		c.net.Dropped.Add(1) // receive buffer full, as a real socket would
	}
}

// ReadFromUDPAddrPort reads one packet.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		c.mu.Lock()
		thawed := c.thawed
		c.mu.Unlock()
		if thawed == nil {
			break
		}
		select {
		case <-thawed:
		case <-c.done:
			return 0, netip.AddrPort{}, net.ErrClosed
		}
	}
	c.mu.Lock()
	dl := c.deadline
	c.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
		}
		tm := time.NewTimer(d)
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case p := <-c.queue:
		return copy(b, p.data), p.from, nil
	case <-c.done:
		return 0, netip.AddrPort{}, net.ErrClosed
	case <-timeout:
		return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
	}
}

// WriteToUDPAddrPort sends one packet.
func (c *Conn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	c.net.send(c.addr, to, b)
	return len(b), nil
}

// ReadFrom implements net.PacketConn.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// WriteTo implements net.PacketConn.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("faultnet: not a UDP address")
	}
	ap := ua.AddrPort()
	return c.WriteToUDPAddrPort(b, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

// Close releases the address; pending and future reads fail.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.net.remove(c)
	})
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.addr) }

// AddrPort is the endpoint's address.
func (c *Conn) AddrPort() netip.AddrPort { return c.addr }

// SetDeadline implements net.PacketConn (reads only; writes never block).
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline implements net.PacketConn; writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
