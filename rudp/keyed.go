package rudp

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// The keyed mode's receive path, handshake sealing and held datagrams.

// keyState is the transport's cluster-key state; keyed is false and the
// rest unused without Config.Keys.
type keyState struct {
	keyed  bool
	hsAEAD []cipher.AEAD // per cluster key, in Config.Keys order

	rxMu    sync.Mutex // the receive scratch below, and every session's replay window
	rxNonce [12]byte
	rxHS    [sealedHSSize]byte

	seenMu    sync.Mutex
	seen      map[uint64]int64 // handshake packets accepted, by tag, until when to remember them
	seenPurge int64
}

// sessSec is a session's cluster-key state.
type sessSec struct {
	crypto    atomicCrypto     // nil until the handshake derived keys
	eph       *ecdh.PrivateKey // this side's ephemeral key of its dial
	key       int              // index of the cluster key the handshake uses
	held      [][]byte         // unreliable datagrams waiting for the session
	heldBytes int
}

const (
	// hsWindow bounds how far a handshake's timestamp may be from the
	// receiver's clock; the receiver remembers the handshake packets it
	// accepted for twice as long and drops them if they come again.
	hsWindow = 60 * time.Second
	// maxSeen bounds the handshake replay memory; beyond it handshakes are
	// refused (only holders of a cluster key can fill it).
	maxSeen = 1 << 16
	// maxHeld and maxHeldBytes bound the unreliable datagrams a session
	// holds while its handshake runs.
	maxHeld      = 256
	maxHeldBytes = 256 << 10
)

// handleSealed opens a keyed-mode datagram and hands its inner packet on.
// It runs on the read goroutine: a datagram that does not open costs a
// counter increment and no allocation.
func (t *Transport) handleSealed(p []byte, from netip.AddrPort) {
	switch p[0] {
	case pktSealed:
		s := t.lookup(from)
		if s == nil {
			t.stats.authFailures.Add(1)
			if len(p) >= SealOverhead+1 {
				t.dialBack(from)
			}
			return
		}
		c := s.sec.crypto.Load()
		if c == nil {
			t.stats.authFailures.Add(1)
			return
		}
		t.ks.rxMu.Lock()
		inner, ok, replay := c.open(p, &t.ks.rxNonce)
		t.ks.rxMu.Unlock()
		switch {
		case replay:
			t.stats.replays.Add(1)
			return
		case !ok:
			t.stats.authFailures.Add(1)
			return
		}
		switch inner[0] {
		case pktKCP, pktDatagram, pktDatagramBatch, pktFragment, pktPing, pktFin, pktRst, pktCaps:
			t.handlePlain(inner, from)
		default:
			t.bad("sealed packet of a type not allowed in a session", from)
		}
	case pktSealedHS:
		h, ok := t.openHandshake(p)
		if ok {
			t.handleHandshake(h, from)
		}
	default:
		t.stats.authFailures.Add(1)
	}
}

// openHandshake opens a sealed handshake packet with each cluster key in
// turn and checks that it is fresh: timestamp within hsWindow, not seen
// before.
func (t *Transport) openHandshake(p []byte) (handshake, bool) {
	if len(p) != sealedHSSize {
		t.stats.authFailures.Add(1)
		return handshake{}, false
	}
	ks := &t.ks
	ks.rxMu.Lock()
	var inner []byte
	key := -1
	for i, a := range ks.hsAEAD {
		b := ks.rxHS[:len(p)]
		copy(b, p) // a failed Open overwrites its output
		var err error
		inner, err = a.Open(b[hsHeader:hsHeader], b[1:hsHeader], b[hsHeader:], b[:1])
		if err == nil {
			key = i
			break
		}
	}
	var h handshake
	ok := key >= 0
	if ok {
		h, ok = parseKeyedHandshake(inner)
		h.key = key
	}
	ks.rxMu.Unlock()
	if key < 0 {
		t.stats.authFailures.Add(1)
		return handshake{}, false
	}
	if !ok {
		t.stats.badPackets.Add(1) // authentic but malformed: a peer's bug
		return handshake{}, false
	}
	now := time.Now().UnixNano()
	if d := now - h.ts; d > int64(hsWindow) || d < -int64(hsWindow) {
		t.stats.replays.Add(1)
		t.warn.Warn("rudp: handshake with a timestamp outside the window (replayed, or clocks differ)",
			"local", t.local, "skew", time.Duration(d).Round(time.Second), "window", hsWindow)
		return handshake{}, false
	}
	id := binary.BigEndian.Uint64(p[len(p)-tagSize:])
	ks.seenMu.Lock()
	defer ks.seenMu.Unlock()
	if now >= ks.seenPurge {
		for k, until := range ks.seen {
			if until < now {
				delete(ks.seen, k)
			}
		}
		ks.seenPurge = now + int64(hsWindow)/4
	}
	if _, dup := ks.seen[id]; dup || len(ks.seen) >= maxSeen {
		t.stats.replays.Add(1)
		return handshake{}, false
	}
	ks.seen[id] = h.ts + 2*int64(hsWindow)
	return h, true
}

// sendHandshake sends a SYN, SYN-ACK or ACK; with keys sealed with
// cluster key h.key, and stamped with the time.
func (t *Transport) sendHandshake(to netip.AddrPort, h handshake) {
	if !t.ks.keyed {
		var b [handshakeSize]byte
		t.write(h.append(b[:0]), to)
		return
	}
	h.ts = time.Now().UnixNano()
	var b [sealedHSSize]byte
	b[0] = pktSealedHS
	out := h.appendKeyed(b[:hsHeader])
	rand.Read(b[1:hsHeader])
	out = t.ks.hsAEAD[h.key].Seal(out[:hsHeader], b[1:hsHeader], out[hsHeader:], b[:1])
	t.write(out, to)
}

// sendTagged sends a PING, FIN or RST of session s; with keys sealed
// with its session keys.
func (t *Transport) sendTagged(s *session, c tagged) {
	var b [taggedSize]byte
	t.sendPacket(s, c.append(b[:0]))
}

// sendPacket sends a session's control packet p, sealed with keys.
func (t *Transport) sendPacket(s *session, p []byte) {
	if !t.ks.keyed {
		t.write(p, s.addr)
		return
	}
	if cr := s.sec.crypto.Load(); cr != nil {
		t.writeSealed(cr, p, s.addr)
	}
}

// writeSealed seals one inner packet with a session's keys and sends it.
func (t *Transport) writeSealed(c *sessCrypto, p []byte, to netip.AddrPort) error {
	sb := sealPool.Get().(*sealBuf)
	defer sealPool.Put(sb)
	b := sb.b[:sealHeader+len(p)]
	copy(b[sealHeader:], p)
	return t.write(c.seal(b, &sb.nonce), to)
}

// cookieEph is the ephemeral key a responder that is not dialing uses
// for a SYN: derived from its cookie secret and the SYN, so that the ACK
// finds it again and an unproven SYN costs no state.
func (t *Transport) cookieEph(from netip.AddrPort, inc, dtok uint64, eph []byte, bucket int64) *ecdh.PrivateKey {
	key, ok := t.cookies.get(bucket)
	if !ok {
		return nil
	}
	h := sha256.New()
	h.Write(key[:])
	h.Write([]byte("ephemeral"))
	var b [8 + 16 + 2 + 8 + 8]byte
	binary.BigEndian.PutUint64(b[:], uint64(bucket))
	a := from.Addr().As16()
	copy(b[8:], a[:])
	binary.BigEndian.PutUint16(b[24:], from.Port())
	binary.BigEndian.PutUint64(b[26:], inc)
	binary.BigEndian.PutUint64(b[34:], dtok)
	h.Write(b[:])
	h.Write(eph)
	k, err := ecdh.X25519().NewPrivateKey(h.Sum(nil))
	if err != nil {
		return nil // cannot happen for 32 bytes
	}
	return k
}

// deriveCrypto computes a session's sealing state from this side's
// ephemeral key and the peer's; nil if the peer's key is invalid.
func deriveCrypto(priv *ecdh.PrivateKey, peerEph []byte, me, peer hsSide) *sessCrypto {
	if priv == nil {
		return nil
	}
	pub, err := ecdh.X25519().NewPublicKey(peerEph)
	if err != nil {
		return nil
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil // a low-order point
	}
	me.eph = priv.PublicKey().Bytes()
	peer.eph = peerEph
	return newSessCrypto(shared, me, peer)
}

// uwrite sends one unreliable datagram. With keys it goes sealed with the
// session keys of the peer, which it dials if needed; until the session
// is up, up to maxHeld datagrams wait in it (see releaseHeldLocked).
func (t *Transport) uwrite(b []byte, to netip.AddrPort) error {
	if !t.ks.keyed {
		return t.write(b, to)
	}
	s, err := t.session(to)
	if err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.state == stateEstablished:
		c := s.sec.crypto.Load()
		s.mu.Unlock()
		return t.writeSealed(c, b, to)
	case s.state == stateDead || len(s.sec.held) >= maxHeld || s.sec.heldBytes+len(b) > maxHeldBytes:
		s.mu.Unlock()
		t.stats.heldDrops.Add(1)
		return nil
	}
	s.sec.held = append(s.sec.held, append([]byte(nil), b...))
	s.sec.heldBytes += len(b)
	s.mu.Unlock()
	return nil
}

// releaseHeldLocked hands the datagrams held during the handshake to the
// session's next write; establishLocked calls it.
func (s *session) releaseHeldLocked() {
	if len(s.sec.held) == 0 {
		return
	}
	if s.tx == nil {
		s.tx = txPool.Get().(*txBatch)
	}
	for _, b := range s.sec.held {
		s.tx.add(b[0], b[1:])
	}
	s.sec.held, s.sec.heldBytes = nil, 0
}

// dropHeldLocked counts and forgets held datagrams of a dying session.
func (s *session) dropHeldLocked() {
	if n := len(s.sec.held); n > 0 {
		s.t.stats.heldDrops.Add(uint64(n))
		s.sec.held, s.sec.heldBytes = nil, 0
	}
}

// cookieSecrets are the random secrets of the current and the previous
// cookie bucket. Older ones are forgotten, so the ephemeral keys derived
// from them (cookieEph) cannot be recomputed later: forward secrecy for
// the responder side too, a few seconds after a handshake.
type cookieSecrets struct {
	mu        sync.Mutex
	bucket    int64
	cur, prev [32]byte
}

func (c *cookieSecrets) init(bucket int64) {
	c.bucket = bucket
	rand.Read(c.cur[:])
	rand.Read(c.prev[:])
}

// get returns the secret of bucket, moving on to it if it is new; false
// for a bucket older than the previous one.
func (c *cookieSecrets) get(bucket int64) ([32]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bucket > c.bucket {
		if bucket == c.bucket+1 {
			c.prev = c.cur
		} else {
			rand.Read(c.prev[:])
		}
		rand.Read(c.cur[:])
		c.bucket = bucket
	}
	switch bucket {
	case c.bucket:
		return c.cur, true
	case c.bucket - 1:
		return c.prev, true
	}
	return [32]byte{}, false
}

// Dial backs.
//
// A sealed session packet from an address this transport has no session
// with most likely comes from a peer that still holds a session with this
// address's previous incarnation (this process restarted here). Nothing
// can answer it (it cannot be told from garbage), so this transport dials
// the sender back: a SYN sealed with each cluster key, whose dial token
// and ephemeral key are derived from the cookie secret (as a responder's
// are), so that the dial back keeps no state until the peer answers. A
// peer with the key answers with a SYN-ACK that echoes the token; only
// then does a session exist here (confirming, as any dialer's), and the
// peer, on the ACK, finds a new incarnation at a known address and
// replaces its stale session at once, failing the work pending on it
// (handleAck), instead of after RetryTimeout of silence.
//
// A sender without a key learns nothing (the SYN proves nothing to it and
// nothing it sends can complete the handshake), and one that forges the
// source address makes this transport send that address's owner a SYN it
// may take or ignore. The cost is bounded: one dial back per address per
// 100 ms (strayAllowed) and at most dialBackRate per second in all, each
// one SYN per cluster key with no retries (the stale peer's next
// retransmission draws another). A session a dial back created that never
// comes up and carried nothing ends quietly (no OnPeerDown, see kill).

// dialBackRate bounds the dial backs per second.
const dialBackRate = 256

// dialBack sends a stateless SYN to addr (see "Dial backs" above).
func (t *Transport) dialBack(addr netip.AddrPort) {
	if t.closing.Load() || checkAddr(addr) != nil || !t.dialBackBudget() || !t.strayAllowed(addr) {
		return
	}
	now := t.now()
	b := t.cookieBucket(now)
	tok := t.cookie(addr, t.inc, dialBackMark, b)
	eph := t.cookieEph(addr, t.inc, tok, []byte("dial back"), b)
	if eph == nil {
		return
	}
	t.stats.dialBacks.Add(1)
	h := handshake{typ: pktSyn, src: t.inc, dtok: tok}
	copy(h.eph[:], eph.PublicKey().Bytes())
	for h.key = range t.ks.hsAEAD {
		t.sendHandshake(addr, h)
	}
}

// dialBackMark stands in for a peer's dial token in the cookie of a dial
// back, so that it is not the cookie any SYN draws.
const dialBackMark = 0x6469616c6261636b // "dialback"

// dialBackBudget reports whether a dial back may go out now (at most
// dialBackRate per second).
func (t *Transport) dialBackBudget() bool {
	sec := t.now() / int64(time.Second)
	t.noSessMu.Lock()
	defer t.noSessMu.Unlock()
	if sec != t.dbSec {
		t.dbSec, t.dbLeft = sec, dialBackRate
	}
	if t.dbLeft == 0 {
		return false
	}
	t.dbLeft--
	return true
}

// dialBackAnswered handles a SYN-ACK from an address without a session:
// if it answers a dial back of this or the previous cookie bucket, the
// session is created (confirming) and the ACK sent, as for any dial.
func (t *Transport) dialBackAnswered(h handshake, from netip.AddrPort, now int64) {
	if !t.ks.keyed {
		return
	}
	for b := t.cookieBucket(now); b >= t.cookieBucket(now)-1; b-- {
		if h.dtok != t.cookie(from, t.inc, dialBackMark, b) {
			continue
		}
		eph := t.cookieEph(from, t.inc, h.dtok, []byte("dial back"), b)
		c := deriveCrypto(eph, h.eph[:], hsSide{inc: t.inc, tok: h.dtok}, hsSide{inc: h.src, tok: h.rtok})
		if c == nil {
			t.bad("handshake with an invalid ephemeral key", from)
			return
		}
		s := newSession(t, from, now)
		s.myTok, s.dialBack = h.dtok, true
		s.sec.eph, s.sec.key = eph, h.key
		s.sec.crypto.Store(c)
		s.confirmLocked(h.src, h.rtok, now)
		t.mu.Lock()
		if t.closing.Load() || t.sessions[from] != nil {
			t.mu.Unlock()
			return
		}
		t.sessions[from] = s
		t.mu.Unlock()
		s.mu.Lock()
		t.sendAckLocked(s, now)
		s.mu.Unlock()
		t.watchHandshake()
		return
	}
}
