package mars

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// View digests: how a node and a restarted MARS find out which parts of the
// node's kept view differ from MARS's state, without sending the view.
//
// Every node record (with its listed state) and every shared key (with its
// value) hashes to 64 bits; its name (address or key) picks one of nb
// buckets (nb a power of two, about one per 40 entries: 256 for 10,000
// nodes). A bucket's digest is the sum of the hashes of its entries, so
// MARS keeps it current per change and a node computes it in one pass over
// its view. A digest is nb bucket sums of 16 bits and the 64-bit sum over
// every entry (520 bytes for 10,000 nodes, one packet): a bucket that
// differs in its 16 bits is resent; if every bucket matches but the total
// does not (a collision), MARS sends a full snapshot. A bucket sync also
// carries MARS's total, and a view whose total differs once it applied
// the sync (a differing bucket whose sums collided) asks for a full
// snapshot.
//
// After a MARS restart a node's report carries the digest of the view it
// kept (report field digest) until the new MARS has reconciled it: MARS
// answers with the contents of the buckets that differ (a sync flagged
// syncFull|syncBuckets whose body lists those buckets: the view replaces
// them and keeps every other entry, confirmed), asks the node to ask again
// soon while registrations of the other nodes still arrive (syncWait), or
// sends a full snapshot when most buckets differ.

// Digest limits.
const (
	maxDigestBuckets = 4096
	perDigestBucket  = 40 // a node picks about this many entries per bucket
)

// digest is the digest of a view or of MARS's state.
type digest struct {
	total   uint64
	buckets []uint16
}

// digestBuckets is the bucket count a node with n entries uses.
func digestBuckets(n int) int {
	nb := 1
	for nb < maxDigestBuckets && nb*perDigestBucket < n {
		nb <<= 1
	}
	return nb
}

// mix64 is a 64-bit finalizer (splitmix64).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashBytes is FNV-1a over a tag byte and p, finalized with mix64. It is
// the same in every process (MARS and nodes must agree).
func hashBytes(tag byte, p []byte) uint64 {
	h := uint64(14695981039346656037)
	h = (h ^ uint64(tag)) * 1099511628211
	for _, c := range p {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return mix64(h)
}

func hashString(tag byte, s string) uint64 {
	h := uint64(14695981039346656037)
	h = (h ^ uint64(tag)) * 1099511628211
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return mix64(h)
}

// Entry names and hashes. A node entry's hash covers its encoded record
// (appendRecord) and its listed state; a key's covers the key and value.
func nodeNameHash(addr string) uint64 { return hashString('N', addr) }
func keyNameHash(key string) uint64   { return hashString('K', key) }

func nodeEntryHash(rec []byte, st State) uint64 {
	return mix64(hashBytes('n', rec) + uint64(st))
}

func keyEntryHash(key string, val int16) uint64 {
	return mix64(hashString('k', key) ^ uint64(uint16(val))<<1)
}

// bucketOf is the bucket of a name hash among nb (a power of two).
func bucketOf(nameHash uint64, nb int) int { return int(nameHash >> 32 & uint64(nb-1)) }

// add counts one entry in the digest.
func (d *digest) add(nameHash, h uint64) {
	d.total += h
	d.buckets[bucketOf(nameHash, len(d.buckets))] += uint16(h)
}

func newDigest(nb int) digest { return digest{buckets: make([]uint16, nb)} }

// appendDigest writes a digest as msgpack bin: the total (8 bytes) then
// every bucket (2 bytes each), big-endian.
func appendDigest(b []byte, d *digest) []byte {
	n := 8 + 2*len(d.buckets)
	switch {
	case n <= 0xff:
		b = append(b, 0xc4, byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	b = binary.BigEndian.AppendUint64(b, d.total)
	for _, x := range d.buckets {
		b = binary.BigEndian.AppendUint16(b, x)
	}
	return b
}

// readDigest reads a digest written by appendDigest, or nil.
func (r *reader) digest() *digest {
	if r.isNil() {
		return nil
	}
	p := r.binBytes(8 + 2*maxDigestBuckets)
	if r.err != nil {
		return nil
	}
	nb := (len(p) - 8) / 2
	if len(p) < 10 || (len(p)-8)%2 != 0 || bits.OnesCount(uint(nb)) != 1 {
		r.fail(fmt.Errorf("%w: digest of %d bytes", errType, len(p)))
		return nil
	}
	d := &digest{total: binary.BigEndian.Uint64(p), buckets: make([]uint16, nb)}
	for i := range d.buckets {
		d.buckets[i] = binary.BigEndian.Uint16(p[8+2*i:])
	}
	return d
}

// binBytes reads a msgpack bin of at most max bytes (aliasing the buffer).
func (r *reader) binBytes(max int) []byte {
	c := r.byte1()
	var n uint64
	switch {
	case r.err != nil:
		return nil
	case c == 0xc4:
		n = r.uintN(1)
	case c == 0xc5:
		n = r.uintN(2)
	case c == 0xc6:
		n = r.uintN(4)
	default:
		r.off--
		r.fail(fmt.Errorf("%w: want bin, got 0x%02x", errType, c))
		return nil
	}
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.fail(fmt.Errorf("bin of %d bytes, limit %d", n, max))
		return nil
	}
	return r.next(int(n))
}

// bucketSet is the set of differing buckets a syncBuckets sync lists: the
// view replaces the entries of these buckets and keeps the others.
type bucketSet struct {
	nb   int
	diff map[int]bool
}

func (s *bucketSet) has(nameHash uint64) bool { return s.diff[bucketOf(nameHash, s.nb)] }

// nonZero keeps 0 free to mean "not counted".
func nonZero(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}
