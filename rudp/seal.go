package rudp

import (
	"crypto/rand"
	"fmt"
)

// Sealing (cluster keys). See "Cluster keys" in the package doc.

const (
	// MaxKeys is the most cluster keys Config.Keys may hold.
	MaxKeys = 8
	// SealOverhead is what sealing adds to a datagram of an established
	// session: a type byte, a 64-bit packet counter and a 16-byte
	// AES-GCM tag. rudp sizes KCP segments and unreliable datagrams so
	// that a sealed packet never exceeds MaxPacketSize.
	SealOverhead = 1 + 8 + 16
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
