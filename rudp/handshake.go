package rudp

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"time"
)

// Handshake and session control.
//
// Every dial draws a fresh random token. The responder answers a SYN with
// a SYN-ACK carrying a token of its own: its dial token when it is dialing
// the same address too (simultaneous open), otherwise a stateless cookie
// (a hash of the address, the dialer's incarnation and token, and a
// coarse time bucket, keyed with a random secret per bucket), so an
// unproven SYN costs no state at all. The dialer, on a SYN-ACK that echoes its token, knows both tokens: it derives
// the session's conversation id and secret tags (confirming state, no KCP
// state yet) and sends an ACK echoing the responder's token. The ACK
// proves the dialer receives packets at its address; only then does the
// responder create the session, replacing an old one, and confirm it with
// a tagged PING. The dialer holds its data until that confirmation (or a
// KCP packet with the new conversation id), so when two handshakes cross,
// the one with the lower session id wins on both sides and nothing sent
// on the other is lost.
//
// PING, FIN and RST carry tags derived from the session secret; the
// incarnations alone (which MARS publishes) prove nothing. A packet for a
// session the receiver does not know draws an unauthenticated NOSESS,
// rate-limited; it only makes the sender probe with a fresh SYN, and the
// probe's answer replaces the session only when a new incarnation answers.

// handshake is the decoded form of SYN, SYN-ACK and ACK.
type handshake struct {
	typ        byte
	src, dst   uint64 // incarnations: the sender's, and the receiver's as the sender knows it
	dtok, rtok uint64 // the dialer's token and the responder's token

	// With cluster keys only (see keyed.go):
	eph [32]byte // the sender's ephemeral X25519 public key
	ts  int64    // when it was sent, Unix ns
	key int      // index of the cluster key that seals it
}

// appendKeyed appends the inner form of a sealed handshake.
func (h handshake) appendKeyed(b []byte) []byte {
	b = h.append(b)
	b = append(b, h.eph[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(h.ts))
}

func parseKeyedHandshake(p []byte) (handshake, bool) {
	if len(p) != keyedHSSize {
		return handshake{}, false
	}
	h, ok := parseHandshake(p[:handshakeSize])
	if h.typ != pktSyn && h.typ != pktSynAck && h.typ != pktAck {
		return handshake{}, false
	}
	copy(h.eph[:], p[handshakeSize:])
	h.ts = int64(binary.BigEndian.Uint64(p[handshakeSize+32:]))
	return h, ok
}

func (h handshake) append(b []byte) []byte {
	b = append(b, h.typ)
	b = binary.BigEndian.AppendUint64(b, h.src)
	b = binary.BigEndian.AppendUint64(b, h.dst)
	b = binary.BigEndian.AppendUint64(b, h.dtok)
	return binary.BigEndian.AppendUint64(b, h.rtok)
}

func parseHandshake(p []byte) (handshake, bool) {
	if len(p) != handshakeSize {
		return handshake{}, false
	}
	h := handshake{
		typ:  p[0],
		src:  binary.BigEndian.Uint64(p[1:]),
		dst:  binary.BigEndian.Uint64(p[9:]),
		dtok: binary.BigEndian.Uint64(p[17:]),
		rtok: binary.BigEndian.Uint64(p[25:]),
	}
	return h, h.src != 0 && h.dtok != 0
}

// tagged is the decoded form of PING, FIN, RST (tag: the session's) and
// NOSESS (tag: the sender's incarnation).
type tagged struct {
	typ  byte
	conv uint32
	tag  uint64
}

func (c tagged) append(b []byte) []byte {
	b = append(b, c.typ)
	b = binary.BigEndian.AppendUint32(b, c.conv)
	return binary.BigEndian.AppendUint64(b, c.tag)
}

func parseTagged(p []byte) (tagged, bool) {
	if len(p) != taggedSize {
		return tagged{}, false
	}
	return tagged{typ: p[0], conv: binary.BigEndian.Uint32(p[1:]), tag: binary.BigEndian.Uint64(p[5:])}, true
}

// sessionKeys are what both ends derive from the two incarnations and the
// two tokens of a handshake.
type sessionKeys struct {
	id             uint64 // orders competing sessions: the lower wins
	conv           uint32 // KCP conversation id
	ping, fin, rst uint64 // tags of the control packets
	caps           uint64 // tag of CAPS (caps.go)
}

func deriveKeys(incA, tokA, incB, tokB uint64) sessionKeys {
	if incA > incB || (incA == incB && tokA > tokB) {
		incA, tokA, incB, tokB = incB, tokB, incA, tokA
	}
	var in [36]byte
	copy(in[:], "rudp")
	binary.BigEndian.PutUint64(in[4:], incA)
	binary.BigEndian.PutUint64(in[12:], tokA)
	binary.BigEndian.PutUint64(in[20:], incB)
	binary.BigEndian.PutUint64(in[28:], tokB)
	h := sha256.Sum256(in[:])
	h2 := sha256.Sum256(h[:])
	k := sessionKeys{
		id:   binary.BigEndian.Uint64(h2[:]),
		conv: binary.LittleEndian.Uint32(h[:]),
		ping: binary.BigEndian.Uint64(h[8:]),
		fin:  binary.BigEndian.Uint64(h[16:]),
		rst:  binary.BigEndian.Uint64(h[24:]),
		caps: binary.BigEndian.Uint64(h2[8:]),
	}
	if k.conv == 0 {
		k.conv = 1
	}
	return k
}

func newToken() uint64 {
	for {
		if v := randUint64(); v != 0 {
			return v
		}
	}
}

func randUint64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// cookieBucket is the time bucket a cookie is valid in (and the next).
func (t *Transport) cookieBucket(now int64) int64 {
	return now / int64(max(t.cfg.RetryTimeout, time.Second))
}

// cookie is the responder token of a transport that is not dialing the
// SYN's sender: a keyed hash, so checking the ACK needs no state.
func (t *Transport) cookie(from netip.AddrPort, inc, dtok uint64, bucket int64) uint64 {
	key, ok := t.cookies.get(bucket)
	if !ok {
		return 0 // no cookie matches 0
	}
	var in [32 + 8 + 16 + 2 + 8 + 8]byte
	copy(in[:], key[:])
	binary.BigEndian.PutUint64(in[32:], uint64(bucket))
	a := from.Addr().As16()
	copy(in[40:], a[:])
	binary.BigEndian.PutUint16(in[56:], from.Port())
	binary.BigEndian.PutUint64(in[58:], inc)
	binary.BigEndian.PutUint64(in[66:], dtok)
	h := sha256.Sum256(in[:])
	return binary.BigEndian.Uint64(h[:]) | 1
}

// cookieOK reports whether rtok is a cookie of this or the previous
// bucket, and which.
func (t *Transport) cookieOK(from netip.AddrPort, inc, dtok, rtok uint64, now int64) (int64, bool) {
	for b := t.cookieBucket(now); b >= t.cookieBucket(now)-1; b-- {
		if rtok == t.cookie(from, inc, dtok, b) {
			return b, true
		}
	}
	return 0, false
}

// sendSynLocked (re)sends the SYN of a dialing session. With keys it
// sends one per cluster key: the peer answers the first it can open.
func (t *Transport) sendSynLocked(s *session, now int64) {
	h := handshake{typ: pktSyn, src: t.inc, dtok: s.myTok}
	if t.ks.keyed {
		if s.sec.eph == nil {
			s.sec.eph = newEphemeral()
		}
		copy(h.eph[:], s.sec.eph.PublicKey().Bytes())
		for h.key = range t.ks.hsAEAD {
			t.sendHandshake(s.addr, h)
		}
	} else {
		t.sendHandshake(s.addr, h)
	}
	s.synNext = now + int64(s.synWait)
	s.synWait = min(2*s.synWait, time.Second)
}

// redialLocked starts the handshake of a confirming session again, once,
// with a fresh token: the peer answered its SYN but never took its proof,
// as when the answer waited in this transport's socket past the life of
// the peer's cookie (this process was behind) and the peer refused the
// ACK that echoed it. What waits to be sent stays queued: none of it has
// left (it waits for the confirmation).
func (t *Transport) redialLocked(s *session, now int64) {
	s.state, s.redialed = stateDialing, true
	s.myTok, s.peerTok, s.remoteInc, s.keys = newToken(), 0, 0, sessionKeys{}
	s.sec.eph = nil
	s.sec.crypto.Store(nil)
	s.created = now
	s.synWait = 50 * time.Millisecond
	t.sendSynLocked(s, now)
}

// sendAckLocked (re)sends the ACK of a confirming session.
func (t *Transport) sendAckLocked(s *session, now int64) {
	t.sendHandshake(s.addr, s.ackPacketLocked())
	s.synNext = now + int64(s.synWait)
	s.synWait = min(2*s.synWait, time.Second)
}

// ackPacketLocked is the ACK of a confirming session.
func (s *session) ackPacketLocked() handshake {
	h := handshake{typ: pktAck, src: s.t.inc, dst: s.remoteInc, dtok: s.myTok, rtok: s.peerTok, key: s.sec.key}
	if s.sec.eph != nil {
		copy(h.eph[:], s.sec.eph.PublicKey().Bytes())
	}
	return h
}

func (t *Transport) handleHandshake(h handshake, from netip.AddrPort) {
	if t.closing.Load() {
		return
	}
	now := t.now()
	switch h.typ {
	case pktSyn:
		t.handleSyn(h, from, now)
	case pktSynAck:
		t.handleSynAck(h, from, now)
	case pktAck:
		t.handleAck(h, from, now)
	}
}

// handleSyn answers every SYN and changes nothing: the session comes with
// the dialer's ACK.
func (t *Transport) handleSyn(h handshake, from netip.AddrPort, now int64) {
	var rtok uint64
	var eph *ecdh.PrivateKey
	if s := t.lookup(from); s != nil {
		s.mu.Lock()
		if s.state == stateDialing || s.state == stateConfirming {
			rtok = s.myTok // simultaneous open: our dial's token
			eph = s.sec.eph
		}
		s.mu.Unlock()
	}
	if rtok == 0 {
		b := t.cookieBucket(now)
		rtok = t.cookie(from, h.src, h.dtok, b)
		if t.ks.keyed {
			eph = t.cookieEph(from, h.src, h.dtok, h.eph[:], b)
		}
	}
	r := handshake{typ: pktSynAck, src: t.inc, dst: h.src, dtok: h.dtok, rtok: rtok, key: h.key}
	if t.ks.keyed {
		if eph == nil {
			return
		}
		copy(r.eph[:], eph.PublicKey().Bytes())
	}
	t.sendHandshake(from, r)
}

func (t *Transport) handleSynAck(h handshake, from netip.AddrPort, now int64) {
	if h.dst != t.inc || h.rtok == 0 {
		return // answers a SYN of a previous incarnation
	}
	s := t.lookup(from)
	if s == nil {
		t.dialBackAnswered(h, from, now) // keyed.go
		return
	}
	s.mu.Lock()
	switch {
	case s.state == stateDialing && h.dtok == s.myTok:
		if t.ks.keyed {
			c := deriveCrypto(s.sec.eph, h.eph[:], hsSide{inc: t.inc, tok: s.myTok}, hsSide{inc: h.src, tok: h.rtok})
			if c == nil {
				s.mu.Unlock()
				t.bad("handshake with an invalid ephemeral key", from)
				return
			}
			s.sec.crypto.Store(c)
			s.sec.key = h.key
		}
		s.confirmLocked(h.src, h.rtok, now)
		t.sendAckLocked(s, now)
		s.mu.Unlock()
	case s.state == stateConfirming && h.dtok == s.myTok && h.rtok == s.peerTok:
		t.sendAckLocked(s, now) // our ACK may be lost
		s.mu.Unlock()
	case !t.ks.keyed && s.state == stateEstablished && s.probeTok != 0 && h.dtok == s.probeTok && h.src != s.remoteInc:
		// A probe proved a new incarnation lives at the address.
		tok := s.probeTok
		s.mu.Unlock()
		ns := t.replace(s, from, now)
		if ns == nil {
			return
		}
		ns.mu.Lock()
		ns.myTok = tok
		ns.confirmLocked(h.src, h.rtok, now)
		t.sendAckLocked(ns, now)
		ns.mu.Unlock()
	default:
		s.mu.Unlock()
	}
}

// replace puts a new session for addr in the table in old's place, then
// ends old (ErrPeerReset). With old nil it returns the session the table
// holds, or a new one. It returns nil if the transport is closing or
// another goroutine replaced old first.
func (t *Transport) replace(old *session, addr netip.AddrPort, now int64) *session {
	t.mu.Lock()
	cur := t.sessions[addr]
	if t.closing.Load() || (old != nil && cur != old) {
		t.mu.Unlock()
		return nil
	}
	if old == nil && cur != nil {
		t.mu.Unlock()
		return cur
	}
	ns := newSession(t, addr, now)
	t.sessions[addr] = ns
	t.mu.Unlock()
	t.watchHandshake()
	if old != nil {
		t.kill(old, ErrPeerReset, false)
	}
	return ns
}

// handleAck creates or completes a session once the dialer has proven it
// receives packets at its address.
func (t *Transport) handleAck(h handshake, from netip.AddrPort, now int64) {
	if h.dst != t.inc {
		return
	}
	s := t.lookup(from)
	valid := false
	if s != nil {
		s.mu.Lock()
		valid = s.state != stateDead && h.rtok == s.myTok &&
			(s.state != stateEstablished || h.dtok == s.peerTok)
		s.mu.Unlock()
	}
	var eph *ecdh.PrivateKey // ours, for the token the ACK echoes
	if valid {
		s.mu.Lock()
		eph = s.sec.eph
		s.mu.Unlock()
	} else if b, ok := t.cookieOK(from, h.src, h.dtok, h.rtok, now); !ok {
		t.bad("handshake ACK without a valid token", from)
		return
	} else if t.ks.keyed {
		eph = t.cookieEph(from, h.src, h.dtok, h.eph[:], b)
	}
	var crypto *sessCrypto
	if t.ks.keyed && eph != nil { // nil: a repeated ACK of our established session
		if crypto = deriveCrypto(eph, h.eph[:], hsSide{inc: t.inc, tok: h.rtok}, hsSide{inc: h.src, tok: h.dtok}); crypto == nil {
			t.bad("handshake ACK with an invalid ephemeral key", from)
			return
		}
	}
	keys := deriveKeys(t.inc, h.rtok, h.src, h.dtok)
	if s == nil {
		if s = t.replace(nil, from, now); s == nil {
			return
		}
	}
	s.mu.Lock()
	adopt := false
	switch s.state {
	case stateDialing:
		adopt = true
	case stateConfirming:
		// Our own handshake crossed the peer's: the lower id wins on
		// both sides; nothing was sent on the loser.
		adopt = keys.id <= s.keys.id || h.src != s.remoteInc
	case stateEstablished:
		if keys.id == s.keys.id {
			t.sendTagged(s, tagged{typ: pktPing, conv: s.conv, tag: s.keys.ping}) // confirm again
			s.mu.Unlock()
			return
		}
		// A proven new handshake from the same incarnation means the peer
		// lost our session and dialed again, unless it is the losing half
		// of handshakes that crossed moments ago: that one comes while
		// our session is young and still hears from the peer.
		keep := h.src == s.remoteInc && now-s.establishedAt < int64(t.cfg.keepalive()) &&
			now-s.lastRecv.Load() < int64(t.cfg.keepalive())/2
		s.mu.Unlock()
		if keep || (t.ks.keyed && crypto == nil) {
			return
		}
		if s = t.replace(s, from, now); s == nil {
			return
		}
		s.mu.Lock()
		adopt = true
	}
	if !adopt || s.state == stateDead || (t.ks.keyed && crypto == nil) {
		s.mu.Unlock()
		return
	}
	s.remoteInc, s.myTok, s.peerTok, s.keys = h.src, h.rtok, h.dtok, keys
	if crypto != nil {
		s.sec.crypto.Store(crypto)
		s.sec.key = h.key
	}
	t.sendCapsLocked(s) // before the PING: the dialer's data may then use them
	s.establishLocked(now)
	t.sendTagged(s, tagged{typ: pktPing, conv: s.conv, tag: keys.ping})
	s.unlockAndWrite()
	t.peerUp(s, h.src)
}

func (t *Transport) handleTagged(c tagged, from netip.AddrPort) {
	if t.closing.Load() {
		return
	}
	now := t.now()
	s := t.lookup(from)
	if c.typ == pktNoSess {
		t.handleNoSess(s, c, now)
		return
	}
	if s == nil {
		if c.typ == pktPing {
			t.noSess(from, c.conv)
		}
		return
	}
	s.mu.Lock()
	known := (s.state == stateConfirming || s.state == stateEstablished) && c.conv == s.keys.conv
	var want uint64
	switch c.typ {
	case pktPing:
		want = s.keys.ping
	case pktFin:
		want = s.keys.fin
	case pktRst:
		want = s.keys.rst
	}
	if !known || c.tag != want {
		s.mu.Unlock()
		if !known && c.typ == pktPing {
			t.noSess(from, c.conv)
		} else if known {
			t.bad("control packet with a wrong tag", from)
		}
		return
	}
	up := false
	switch c.typ {
	case pktPing:
		s.lastRecv.Store(now)
		if s.state == stateConfirming {
			s.establishLocked(now)
			up = true
		} else {
			t.askCapsLocked(s) // a keepalive: is the peer's CAPS still missing?
		}
		s.unlockAndWrite()
		if up {
			t.peerUp(s, s.remoteInc)
		}
	case pktFin:
		s.mu.Unlock()
		t.kill(s, ErrPeerClosed, false)
	case pktRst:
		s.mu.Unlock()
		t.kill(s, ErrPeerReset, false)
	}
}

// handleNoSess: the peer does not know a session we use. It proves
// nothing, so it only makes us probe (at most once per noSessProbeEvery
// or keepalive period, whichever is shorter): resend our ACK while
// confirming, or send a SYN with a fresh token, whose answer replaces the
// session only if a new incarnation gives it (handleSynAck).
// noSessProbeEvery bounds the probe SYNs hints (forged or not) draw per session.
const noSessProbeEvery = 100 * time.Millisecond

func (t *Transport) handleNoSess(s *session, c tagged, now int64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.conv != s.keys.conv || s.probeAt != 0 && now-s.probeAt < int64(min(t.cfg.keepalive(), noSessProbeEvery)) {
		return
	}
	s.probeAt = now
	switch s.state {
	case stateConfirming:
		t.sendHandshake(s.addr, s.ackPacketLocked())
	case stateEstablished:
		s.probeTok = newToken()
		t.sendHandshake(s.addr, handshake{typ: pktSyn, src: t.inc, dst: s.remoteInc, dtok: s.probeTok})
	}
}

// noSess tells a peer that a session it uses does not exist here, at most
// once per 100 ms per address.
//
// Not with keys: a packet that opened with session keys belongs to a
// session this side has, and a hint would answer strangers (with keys, a
// packet of a session this side does not have makes it dial the sender
// back instead: dialBack in keyed.go).
func (t *Transport) noSess(to netip.AddrPort, conv uint32) {
	if t.ks.keyed || !t.strayAllowed(to) {
		return
	}
	var b [taggedSize]byte
	t.write(tagged{typ: pktNoSess, conv: conv, tag: t.inc}.append(b[:0]), to)
}

// strayAllowed rate-limits what a packet of an unknown session draws
// (a NOSESS hint, or with keys a dial back): once per 100 ms per address.
func (t *Transport) strayAllowed(from netip.AddrPort) bool {
	now := t.now()
	t.noSessMu.Lock()
	defer t.noSessMu.Unlock()
	if last, ok := t.noSessAt[from]; ok && now-last < 100e6 {
		return false
	}
	if len(t.noSessAt) > 4096 {
		clear(t.noSessAt)
	}
	t.noSessAt[from] = now
	return true
}
