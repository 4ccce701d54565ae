package rudp

import (
	"encoding/binary"
	"net/netip"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

// Capabilities: what a peer accepts before a session sends it more than the
// standard sizes.
//
// Transports before this exchange read datagrams of at most 2,800 (later
// 16.5 Ki) bytes and dropped segments of more than 1,500 bytes, so a
// session that sent them loopback-sized packets would stall. A session
// therefore starts at the standard sizes (MaxPacketSize datagrams, kcpMSS
// segments) and grows only towards a peer that has said what it accepts.
// The responder sends its CAPS, asking for the dialer's, just before its
// confirming PING, so the dialer knows the responder's sizes before its
// first data goes out; the dialer answers with its own. An end that has not
// heard its peer's CAPS asks again when a keepalive PING of the peer
// arrives; a session sends at most capsTries CAPS. An older peer drops CAPS
// as an unknown packet type (and counts a bad packet) and keeps the
// standard sizes.
//
//	CAPS [0x17][conv u32][tag u64][flags][max datagram u32][max segment u32][features u32]
//
// The tag is derived from the session keys like PING's. flags bit 0: the
// sender has not heard the receiver's CAPS yet and asks for it. features
// (later; absent from older transports' CAPS, read as 0) are the upper
// layer's bits, Config.Features.

const (
	pktCaps      byte = 0x17
	capsSize          = taggedSize + 1 + 4 + 4 // the shortest CAPS (older transports send no features)
	capsFullSize      = capsSize + 4
	capsAsk      byte = 1 // flags: answer with your CAPS
	capsTries         = 4 // CAPS sent per session at most, answers included
)

// caps is the decoded form of CAPS.
type caps struct {
	tagged
	flags      byte
	maxPacket  uint32 // the largest UDP payload the sender reads whole
	maxSegment uint32 // the most data one KCP segment may carry towards it
	features   uint32 // the sender's Config.Features (0 from older transports)
}

func (c caps) append(b []byte) []byte {
	b = c.tagged.append(b)
	b = append(b, c.flags)
	b = binary.BigEndian.AppendUint32(b, c.maxPacket)
	b = binary.BigEndian.AppendUint32(b, c.maxSegment)
	return binary.BigEndian.AppendUint32(b, c.features)
}

// parseCaps decodes a CAPS packet. Longer packets are accepted (a later
// version may add fields); shorter ones are not.
func parseCaps(p []byte) (caps, bool) {
	if len(p) < capsSize || p[0] != pktCaps {
		return caps{}, false
	}
	c := caps{
		tagged:     tagged{typ: p[0], conv: binary.BigEndian.Uint32(p[1:]), tag: binary.BigEndian.Uint64(p[5:])},
		flags:      p[13],
		maxPacket:  binary.BigEndian.Uint32(p[14:]),
		maxSegment: binary.BigEndian.Uint32(p[18:]),
	}
	if len(p) >= capsFullSize {
		c.features = binary.BigEndian.Uint32(p[capsSize:])
	}
	return c, true
}

// sendCapsLocked sends this transport's CAPS on s (s.mu held), asking for
// the peer's while it has not been heard. It sends nothing once capsTries
// are spent.
func (t *Transport) sendCapsLocked(s *session) {
	if s.capsSent >= capsTries || t.noCaps.Load() {
		return
	}
	s.capsSent++
	c := caps{
		tagged:     tagged{typ: pktCaps, conv: s.keys.conv, tag: s.keys.caps},
		maxPacket:  maxWirePacket,
		maxSegment: kcp.MaxSegmentData,
		features:   t.cfg.Features,
	}
	if s.peerPacket == 0 {
		c.flags = capsAsk
	}
	var b [capsFullSize]byte
	t.sendPacket(s, c.append(b[:0]))
}

// handleCaps records what the peer accepts and lets an established session
// grow its packets and segments to it.
func (t *Transport) handleCaps(c caps, from netip.AddrPort) {
	if t.closing.Load() || t.noCaps.Load() {
		return
	}
	s := t.lookup(from)
	if s == nil {
		return
	}
	s.mu.Lock()
	known := (s.state == stateConfirming || s.state == stateEstablished) && c.conv == s.keys.conv
	if !known || c.tag != s.keys.caps {
		s.mu.Unlock()
		if known {
			t.bad("CAPS with a wrong tag", from)
		}
		return
	}
	s.lastRecv.Store(t.now())
	first := s.peerPacket == 0
	s.peerPacket = max(int(min(c.maxPacket, maxWirePacket)), MaxPacketSize)
	s.peerSegment = max(int(min(c.maxSegment, kcp.MaxSegmentData)), t.kcpMSS)
	s.peerFeatures.Store(c.features)
	if s.state == stateEstablished && first {
		s.growLocked()
	}
	if c.flags&capsAsk != 0 {
		t.sendCapsLocked(s)
	}
	s.mu.Unlock()
}

// askCapsLocked asks an established session's peer for its CAPS again if
// it has not been heard (called on the peer's keepalive PING).
func (t *Transport) askCapsLocked(s *session) {
	if s.peerPacket == 0 && s.state == stateEstablished {
		t.sendCapsLocked(s)
	}
}

// growLocked raises the session's KCP packet and segment sizes to what the
// path and the peer allow. Segments already queued keep their size.
func (s *session) growLocked() {
	mtu := s.t.sessionMTU(s.addr, s.peerPacket)
	if mtu <= s.mtu {
		return
	}
	if s.kcp.SetSizes(mtu, s.peerSegment) == 0 {
		s.mtu, s.mss = mtu, s.kcp.Mss()
	}
}

// PeerFeatures returns the feature bits (Config.Features) of the peer at
// addr, as its CAPS said; 0 while there is no session, before its CAPS
// arrived, or for a transport from before features.
func (t *Transport) PeerFeatures(addr netip.AddrPort) uint32 {
	if s := t.lookup(addr); s != nil {
		return s.peerFeatures.Load()
	}
	return 0
}
