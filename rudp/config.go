package rudp

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"
)

// Config tunes a Transport. The zero value of every field means its
// default (DefaultConfig); New refuses a Config that Validate refuses.
type Config struct {
	// RetryInterval is the base of the keepalive period: an idle session
	// sends a ping every min(RetryInterval, RetryTimeout/4). Default 1 s.
	RetryInterval time.Duration
	// RetryTimeout is how long a peer may stay silent (or a handshake stay
	// unanswered) before its session is declared dead. Default 3 s.
	RetryTimeout time.Duration
	// Interval is the longest the timer waits between two looks at a
	// session with data in flight; a retransmission is sent when its
	// timer is due, which follows the measured round trip. Default 10 ms
	// (the KCP minimum).
	Interval time.Duration
	// SendWindow and RecvWindow are the KCP windows in segments. Default 1024.
	SendWindow, RecvWindow int
	// MaxQueued bounds the bytes a peer session buffers before Send blocks.
	// A message is always accepted into an empty queue. Default 32 MiB.
	MaxQueued int
	// CloseTimeout bounds how long Close waits for queued reliable data to
	// be acknowledged before it sends the close frames. Default 1 s.
	CloseTimeout time.Duration
	// ReassemblyTTL is how long the parts of an unreliable message wait for
	// the rest. Default 3 s.
	ReassemblyTTL time.Duration
	// ReassemblyLimit bounds the bytes held for incomplete unreliable
	// messages; the oldest are dropped first. Default 32 MiB.
	ReassemblyLimit int

	// OnMessage receives every message, on the transport's read goroutine
	// (or, after Resume, its event goroutine): it must not block; use
	// SendMsg with NoWait to answer, and Pause to hold a peer back.
	// payload is owned by the callee. Reliable messages from one peer
	// arrive in the order they were sent.
	OnMessage func(from netip.AddrPort, kind byte, payload []byte, reliable bool)
	// MayBlock, if set, is asked on the read goroutine for each reliable
	// message's kind (it must be quick and must not block). For a kind it
	// reports true for, OnMessage runs on a goroutine that has handed the
	// socket to another one first (leader/follower, see readers.go), so it
	// may run code that blocks for a while; messages from one peer still
	// arrive in order, and wait for the one before them: a message that
	// waits for the peer's answer to a message of its own waits in vain
	// (use OnBlocking).
	MayBlock func(kind byte) bool
	// OnBlocking, if set, receives the reliable messages of the kinds
	// MayBlock claims instead of OnMessage: in order with the peer's
	// other messages and, like OnMessage, quickly (payload is owned by
	// the callee). It returns the blocking part of the work, or nil. That
	// runs next on the same goroutine, which has handed the socket on
	// and given up delivering the peer's messages (later ones are
	// delivered meanwhile by other goroutines): it may block, and may
	// send to the peer and wait for its answer. The work of messages
	// delivered together runs one after another. A message counts as
	// delivered (SendOptions.Done) once OnBlocking returned for it.
	OnBlocking func(from netip.AddrPort, kind byte, payload []byte) (run func())
	// OnPeerUp is called when a session with a peer incarnation is
	// established. It and OnPeerDown run on the transport's event
	// goroutine, in order, never on the read or timer goroutines.
	OnPeerUp func(addr netip.AddrPort, incarnation uint64)
	// OnPeerDown is called once when a session ends; err is a *PeerError.
	OnPeerDown func(addr netip.AddrPort, err error)
	// Logger receives rate-limited warnings. Default slog.Default().
	Logger *slog.Logger
	// Features are the upper layer's feature bits, sent to every peer in
	// CAPS (caps.go); PeerFeatures returns a peer's. A transport from
	// before them sends none (0). Default 0.
	Features uint32

	// Keys are the cluster keys (see "Cluster keys" in the package doc).
	// Empty: nothing is encrypted or authenticated. Otherwise every
	// datagram this transport sends or accepts is sealed with AES-256-GCM
	// (SealOverhead bytes each on a session), with per-session keys and
	// replay protection; Keys[0] is tried first when dialing, and a peer
	// is accepted if it holds any key of the list, which is how a key is
	// rotated without downtime. At most MaxKeys keys; an all-zero key is
	// refused with ErrBadKey. Generate keys with GenerateKey.
	Keys [][32]byte
}

// DefaultConfig returns the value New gives every zero field of a Config
// (callbacks and keys excepted).
func DefaultConfig() Config {
	return Config{
		// An idle session pings every min(RetryInterval, RetryTimeout/4):
		// 750 ms with these defaults, a quarter of the silence limit, so
		// that three pings may be lost before a live peer is called dead.
		RetryInterval: time.Second,
		// The silence limit (DESIGN.md: retryTimeout 3,000 ms): long
		// against scheduling stalls of a loaded process, short enough to
		// fail pending work within seconds when a peer dies quietly.
		RetryTimeout: 3 * time.Second,
		// KCP's shortest flush interval; timers are also run when due.
		Interval: 10 * time.Millisecond,
		// 1,024 segments in flight: a 16 MB window with loopback-sized
		// segments, 1.4 MB with standard ones (a few ms at 1 Gb/s).
		SendWindow: 1024,
		RecvWindow: 1024,
		// 32 MiB queued per peer before Send waits: three maximum-size
		// messages.
		MaxQueued: 32 << 20,
		// What Close waits for queued data before it gives up on it.
		CloseTimeout: time.Second,
		// An unreliable message's parts wait as long as a silent peer.
		ReassemblyTTL: 3 * time.Second,
		// Partial unreliable messages held at most, all peers together.
		ReassemblyLimit: 32 << 20,
	}
}

// Validate checks the fields New uses (a zero field takes its default) and
// the cluster keys; the error names the first field out of range, its
// value and the range allowed, and wraps ErrBadConfig (or ErrBadKey).
func (c Config) Validate() error {
	durs := []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		{"RetryInterval", c.RetryInterval, time.Millisecond, time.Hour},
		{"RetryTimeout", c.RetryTimeout, 10 * time.Millisecond, 24 * time.Hour},
		{"Interval", c.Interval, 10 * time.Millisecond, 5 * time.Second},
		{"CloseTimeout", c.CloseTimeout, time.Millisecond, time.Hour},
		{"ReassemblyTTL", c.ReassemblyTTL, time.Millisecond, time.Hour},
	}
	for _, d := range durs {
		if d.v != 0 && (d.v < d.min || d.v > d.max) {
			return fmt.Errorf("%w: %s %v, want 0 (default) or %v..%v", ErrBadConfig, d.name, d.v, d.min, d.max)
		}
	}
	ints := []struct {
		name     string
		v        int
		min, max int
	}{
		{"SendWindow", c.SendWindow, 1, 0xffff}, // KCP advertises windows in 16 bits
		{"RecvWindow", c.RecvWindow, 1, 0xffff},
		{"MaxQueued", c.MaxQueued, 1, math.MaxInt},
		{"ReassemblyLimit", c.ReassemblyLimit, MaxPacketSize, math.MaxInt},
	}
	for _, n := range ints {
		if n.v != 0 && (n.v < n.min || n.v > n.max) {
			return fmt.Errorf("%w: %s %d, want 0 (default) or %d..%d", ErrBadConfig, n.name, n.v, n.min, n.max)
		}
	}
	return checkKeys(c.Keys)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.RetryInterval == 0 {
		c.RetryInterval = d.RetryInterval
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = d.RetryTimeout
	}
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.SendWindow == 0 {
		c.SendWindow = d.SendWindow
	}
	if c.RecvWindow == 0 {
		c.RecvWindow = d.RecvWindow
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = d.MaxQueued
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = d.CloseTimeout
	}
	if c.ReassemblyTTL == 0 {
		c.ReassemblyTTL = d.ReassemblyTTL
	}
	if c.ReassemblyLimit == 0 {
		c.ReassemblyLimit = d.ReassemblyLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// keepalive is how long a session may send nothing before it pings.
func (c Config) keepalive() time.Duration {
	return min(c.RetryInterval, c.RetryTimeout/4)
}
