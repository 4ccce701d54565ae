package rudp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
)

// Sealing (cluster keys). See "Cluster keys" in the package doc.
//
//	session   [0x30][counter u64][AES-256-GCM(inner packet)][tag 16]
//	handshake [0x31][nonce 12][AES-256-GCM(inner handshake)][tag 16]
//
// A session packet's inner packet is any packet of packet.go except the
// handshake and NOSESS; the nonce is the counter, the header the
// additional data, and each direction of a session has its own key. A
// handshake packet is sealed with a key derived from a cluster key, under
// a random nonce, and its inner form carries an ephemeral X25519 key and
// a timestamp (see handshake.go).

const (
	// MaxKeys is the most cluster keys Config.Keys may hold.
	MaxKeys = 8
	// SealOverhead is what sealing adds to a datagram of an established
	// session: a type byte, a 64-bit packet counter and a 16-byte
	// AES-GCM tag. rudp sizes KCP segments and unreliable datagrams so
	// that a sealed packet never exceeds MaxPacketSize.
	SealOverhead = sealHeader + tagSize

	pktSealed   byte = 0x30
	pktSealedHS byte = 0x31

	sealHeader   = 1 + 8 // type, counter
	tagSize      = 16
	hsNonceSize  = 12
	hsHeader     = 1 + hsNonceSize
	hsOverhead   = hsHeader + tagSize
	keyedHSSize  = handshakeSize + 32 + 8 // + ephemeral public key, timestamp
	sealedHSSize = keyedHSSize + hsOverhead
)

// GenerateKey returns a new random cluster key (from crypto/rand).
func GenerateKey() ([32]byte, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("rudp: generate key: %w", err)
	}
	return k, nil
}

// checkKeys validates Config.Keys.
func checkKeys(keys [][32]byte) error {
	if len(keys) > MaxKeys {
		return fmt.Errorf("%w: %d keys, at most %d", ErrBadKey, len(keys), MaxKeys)
	}
	for i, k := range keys {
		if k == ([32]byte{}) {
			return fmt.Errorf("%w: key %d of %d is all zeros (want 32 random bytes, e.g. from GenerateKey)", ErrBadKey, i+1, len(keys))
		}
	}
	return nil
}

func newGCM(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // 32-byte keys only
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
}

// handshakeAEADs derives the handshake sealing key of each cluster key.
func handshakeAEADs(keys [][32]byte) []cipher.AEAD {
	out := make([]cipher.AEAD, len(keys))
	for i, k := range keys {
		hk, err := hkdf.Key(sha256.New, k[:], nil, "marsmesh rudp v1 handshake", 32)
		if err != nil {
			panic(err)
		}
		out[i] = newGCM(hk)
	}
	return out
}

// sessCrypto is the sealing state of one session.
type sessCrypto struct {
	send, recv cipher.AEAD
	ctr        atomic.Uint64 // the last counter sealed
	win        replayWindow  // the read goroutine's only
}

// hsSide is one side's part of a handshake transcript.
type hsSide struct {
	inc, tok uint64
	eph      []byte // X25519 public key
}

func (a hsSide) less(b hsSide) bool {
	return a.inc < b.inc || (a.inc == b.inc && a.tok < b.tok)
}

// newSessCrypto derives a session's two directional keys from the X25519
// shared secret and the transcript (both sides' incarnations, tokens and
// ephemeral keys), which both ends order the same way.
func newSessCrypto(shared []byte, me, peer hsSide) *sessCrypto {
	lo, hi := me, peer
	if peer.less(me) {
		lo, hi = peer, me
	}
	salt := make([]byte, 0, 2*(16+32))
	for _, s := range []hsSide{lo, hi} {
		salt = binary.BigEndian.AppendUint64(salt, s.inc)
		salt = binary.BigEndian.AppendUint64(salt, s.tok)
		salt = append(salt, s.eph...)
	}
	k, err := hkdf.Key(sha256.New, shared, salt, "marsmesh rudp v1 session", 64)
	if err != nil {
		panic(err)
	}
	c := &sessCrypto{send: newGCM(k[:32]), recv: newGCM(k[32:])}
	switch {
	case me.inc == peer.inc && me.tok == peer.tok: // talking to itself
		c.recv = c.send
	case peer.less(me):
		c.send, c.recv = c.recv, c.send
	}
	return c
}

// seal seals the inner packet at b[sealHeader:] in place; b must have
// tagSize bytes of spare capacity. nonce is scratch.
func (c *sessCrypto) seal(b []byte, nonce *[12]byte) []byte {
	n := c.ctr.Add(1)
	b[0] = pktSealed
	binary.BigEndian.PutUint64(b[1:], n)
	binary.BigEndian.PutUint64(nonce[4:], n)
	return c.send.Seal(b[:sealHeader], nonce[:], b[sealHeader:], b[:sealHeader])
}

// open opens a session packet in place and returns the inner packet.
// replay reports an authentic packet that was seen before or is too old.
func (c *sessCrypto) open(p []byte, nonce *[12]byte) (inner []byte, ok, replay bool) {
	if len(p) < SealOverhead+1 {
		return nil, false, false
	}
	n := binary.BigEndian.Uint64(p[1:])
	if !c.win.fresh(n) {
		// Checked before opening: a replay costs no decryption. A forged
		// counter that looks old is dropped either way.
		return nil, false, true
	}
	binary.BigEndian.PutUint64(nonce[4:], n)
	inner, err := c.recv.Open(p[sealHeader:sealHeader], nonce[:], p[sealHeader:], p[:sealHeader])
	if err != nil {
		return nil, false, false
	}
	c.win.mark(n)
	return inner, true, false
}

// replayWindow remembers which of the last replayBits counters were seen
// (the sliding bitmap of WireGuard and IPsec). Counters start at 1.
type replayWindow struct {
	max  uint64
	bits [replayWords]uint64
}

const (
	replayWords = 32
	// replayBits is how far behind the newest counter a packet may arrive
	// (reordering by the network or by concurrent senders) and still count.
	replayBits = (replayWords - 1) * 64
)

func (w *replayWindow) fresh(n uint64) bool {
	if n == 0 {
		return false
	}
	if n > w.max {
		return true
	}
	if w.max-n >= replayBits {
		return false
	}
	return w.bits[(n/64)%replayWords]&(1<<(n%64)) == 0
}

// mark records n, which fresh accepted.
func (w *replayWindow) mark(n uint64) {
	if n > w.max {
		cur, top := w.max/64, n/64
		if top-cur >= replayWords {
			clear(w.bits[:])
		} else {
			for i := cur + 1; i <= top; i++ {
				w.bits[i%replayWords] = 0
			}
		}
		w.max = n
	}
	w.bits[(n/64)%replayWords] |= 1 << (n % 64)
}

// sealBuf is scratch for sealing one datagram outside a txBatch.
type sealBuf struct {
	b     [MaxPacketSize + 64]byte
	nonce [12]byte
}

var sealPool = sync.Pool{New: func() any { return new(sealBuf) }}

// newEphemeral draws a dial's X25519 key pair.
func newEphemeral() *ecdh.PrivateKey {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return k
}

type atomicCrypto = atomic.Pointer[sessCrypto]
