package rudp

import "sync/atomic"

// Stats is a snapshot of transport counters. Counters are cumulative since
// the transport started.
type Stats struct {
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64 // UDP payload bytes read and written
	BadPackets            uint64 // malformed or unexpected packets dropped
	WriteErrors           uint64
	// Retransmits counts KCP data segments sent again (timeout, fast or
	// early retransmission), as seen in this transport's output.
	Retransmits uint64
	// Splits counts unreliable messages split into fragments.
	Splits uint64
	// ReassemblyDrops counts incomplete unreliable messages dropped: past
	// ReassemblyTTL, larger than the limit, or evicted by a budget.
	ReassemblyDrops uint64
	// PeersDead counts sessions ended by silence, an unanswered handshake,
	// a reset by the peer or a protocol error (not graceful closes).
	PeersDead uint64
	// Paused counts the Pause calls that paused a running session.
	Paused uint64
	// AuthFailures counts datagrams dropped because they did not open
	// with a cluster key or session key (wrong or no key, a flipped bit,
	// garbage, or a late packet of a replaced session). Keyed mode only.
	AuthFailures uint64
	// Replays counts datagrams dropped as replays: a session packet whose
	// counter was seen before or is too old for the replay window
	// (checked before decryption, so a forgery with such a counter counts
	// here too), or a handshake packet seen before or with a timestamp
	// outside the window. Keyed mode only.
	Replays uint64
	// HeldDrops counts unreliable messages dropped in keyed mode while
	// they waited for a session: it did not come up, or too many waited.
	HeldDrops uint64
	// DialBacks counts handshakes started because a sealed packet came
	// from an address without a session (a peer of this address's
	// previous incarnation, see "Cluster keys" in the package doc).
	// Keyed mode only.
	DialBacks uint64
	Sessions  int
}

type counters struct {
	packetsIn, packetsOut, badPackets, writeErrors atomic.Uint64
	bytesIn, bytesOut                              atomic.Uint64
	retransmits, splits                            atomic.Uint64
	peersDead, paused                              atomic.Uint64
	authFailures, replays, heldDrops, dialBacks    atomic.Uint64
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	t.mu.RLock()
	n := len(t.sessions)
	t.mu.RUnlock()
	return Stats{
		PacketsIn:       t.stats.packetsIn.Load(),
		PacketsOut:      t.stats.packetsOut.Load(),
		BytesIn:         t.stats.bytesIn.Load(),
		BytesOut:        t.stats.bytesOut.Load(),
		BadPackets:      t.stats.badPackets.Load(),
		WriteErrors:     t.stats.writeErrors.Load(),
		Retransmits:     t.stats.retransmits.Load(),
		Splits:          t.stats.splits.Load(),
		ReassemblyDrops: t.reasm.drops.Load(),
		PeersDead:       t.stats.peersDead.Load(),
		Paused:          t.stats.paused.Load(),
		AuthFailures:    t.stats.authFailures.Load(),
		Replays:         t.stats.replays.Load(),
		HeldDrops:       t.stats.heldDrops.Load(),
		DialBacks:       t.stats.dialBacks.Load(),
		Sessions:        n,
	}
}
