package rudp

import (
	"net"
	"net/netip"
	"sync"
)

// Bigger datagrams where the path allows.
//
// Where the interface that reaches the peer has a larger MTU than the usual
// 1,500 (loopback: 65,536; jumbo frames: 9,000), a session's KCP packets
// are up to maxWirePacket bytes and its segments up to kcp.MaxSegmentData
// (16 KiB; internal/kcp sizes their buffers to fit): a 64 KiB message then
// takes 5 segments in 2 datagrams on loopback instead of 48 segments in
// 48 datagrams, each way. Every rudp transport reads datagrams of up to
// readBufSize bytes and accepts segments of up to kcp.MaxSegmentData, and
// says so in its CAPS (caps.go); a session grows only towards a peer whose
// CAPS it has, so an older peer keeps getting the standard sizes.

// maxWirePacket is the largest UDP payload a session sends where the path
// allows (below the 65,507 bytes of an IPv4 UDP datagram, with room for a
// seal); MaxPacketSize where it does not.
const maxWirePacket = 63 << 10

// readBufSize is the read buffer per datagram: room for maxWirePacket and
// anything a layer adds in front (sealing).
const readBufSize = maxWirePacket + 512

// ipUDPOverhead is the IP and UDP header bytes a datagram costs on the link.
func ipUDPOverhead(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return 20 + 8
	}
	return 40 + 8
}

// pathMTUs caches the link MTU towards peer IPs, per transport.
type pathMTUs struct {
	mu  sync.Mutex
	mtu map[netip.Addr]int
}

// sessionMTU is the KCP packet size (SetMtu) for a session with peer,
// which reads datagrams of up to peerPacket bytes (0: unknown, see
// caps.go): t.kcpMTU (which leaves room for the seal with keys) plus
// whatever room the path and the peer have above MaxPacketSize, at most
// maxWirePacket - MaxPacketSize more.
func (t *Transport) sessionMTU(peer netip.AddrPort, peerPacket int) int {
	if _, ok := t.conn.(*net.UDPConn); !ok || peerPacket <= MaxPacketSize {
		return t.kcpMTU // tests' in-memory sockets keep the standard size
	}
	link := t.paths.linkMTU(t.local.Addr(), peer.Addr())
	wire := min(link-ipUDPOverhead(peer.Addr()), maxWirePacket, peerPacket)
	if wire <= MaxPacketSize {
		return t.kcpMTU
	}
	return t.kcpMTU + wire - MaxPacketSize
}

// linkMTU is the MTU of the local interface whose address reaches peer
// (0 when unknown).
func (p *pathMTUs) linkMTU(local, peer netip.Addr) int {
	peer = peer.Unmap()
	p.mu.Lock()
	m, ok := p.mtu[peer]
	p.mu.Unlock()
	if ok {
		return m
	}
	m = lookupLinkMTU(local, peer)
	p.mu.Lock()
	if p.mtu == nil {
		p.mtu = make(map[netip.Addr]int)
	}
	if len(p.mtu) >= 4096 {
		clear(p.mtu) // a bound, not an LRU: a lookup is cheap
	}
	p.mtu[peer] = m
	p.mu.Unlock()
	return m
}

// lookupLinkMTU finds the interface that holds the source address the
// kernel picks for peer (or local, when bound to one) and returns its MTU.
func lookupLinkMTU(local, peer netip.Addr) int {
	src := local.Unmap()
	if !src.IsValid() || src.IsUnspecified() {
		// Connecting a UDP socket sends nothing; it makes the kernel
		// choose the route and the source address.
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, 9)))
		if err != nil {
			return 0
		}
		src = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return 0
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if pfx, err := netip.ParsePrefix(a.String()); err == nil && pfx.Addr().Unmap() == src {
				return ifc.MTU
			}
		}
	}
	return 0
}
