package rudp

import (
	"log/slog"
	"net/netip"
	"time"
)

// Config tunes a Transport. The zero value of every field means its default.
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

func (c Config) withDefaults() Config {
	if c.RetryInterval <= 0 {
		c.RetryInterval = time.Second
	}
	if c.RetryTimeout <= 0 {
		c.RetryTimeout = 3 * time.Second
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.SendWindow <= 0 {
		c.SendWindow = 1024
	}
	if c.RecvWindow <= 0 {
		c.RecvWindow = 1024
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 32 << 20
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = time.Second
	}
	if c.ReassemblyTTL <= 0 {
		c.ReassemblyTTL = 3 * time.Second
	}
	if c.ReassemblyLimit <= 0 {
		c.ReassemblyLimit = 32 << 20
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
