package rudp

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinel errors. Every error rudp returns wraps one of them, so callers
// can classify with errors.Is.
var (
	// ErrClosed: the transport is closed or closing.
	ErrClosed = errors.New("rudp: transport closed")
	// ErrTooLarge: the message exceeds MaxMessageSize (or its header
	// MaxHeaderSize); nothing was sent.
	ErrTooLarge = errors.New("rudp: message too large")
	// ErrWouldBlock: a NoWait send found the peer's queue over MaxQueued;
	// nothing was queued.
	ErrWouldBlock = errors.New("rudp: peer queue full")
	// ErrInvalidAddr: the peer address is not a valid ip:port with a
	// non-zero port.
	ErrInvalidAddr = errors.New("rudp: invalid peer address")
	// ErrPeerDown is wrapped by every error that ends a peer session.
	ErrPeerDown = errors.New("rudp: peer down")
	// ErrUnreachable: the handshake got no answer within the retry timeout.
	ErrUnreachable = errors.New("rudp: peer unreachable")
	// ErrPeerTimeout: no packet from the peer within the retry timeout.
	ErrPeerTimeout = errors.New("rudp: peer silent past retry timeout")
	// ErrPeerClosed: the peer closed the session gracefully.
	ErrPeerClosed = errors.New("rudp: peer closed")
	// ErrPeerReset: the peer no longer knows the session (it restarted, or
	// a new incarnation took its address).
	ErrPeerReset = errors.New("rudp: peer reset the session")
	// ErrProtocol: the peer sent a stream rudp cannot decode.
	ErrProtocol = errors.New("rudp: protocol error")
	// ErrBadKey: Config.Keys holds an all-zero key or more than MaxKeys
	// keys (New and Listen refuse to start).
	ErrBadKey = errors.New("rudp: bad cluster key")
	// ErrBadConfig: a Config field is out of range (Config.Validate; New
	// and Listen refuse to start).
	ErrBadConfig = errors.New("rudp: bad config")
)

// PeerError reports why a peer session ended and how many reliable
// messages queued on it were never acknowledged.
type PeerError struct {
	Addr    netip.AddrPort
	Reason  error // one of ErrUnreachable, ErrPeerTimeout, ErrPeerClosed, ErrPeerReset, ErrProtocol, ErrClosed
	Unacked int   // messages queued on the session and not acknowledged
}

func (e *PeerError) Error() string {
	if e.Unacked > 0 {
		return fmt.Sprintf("%v: %s (%d unacknowledged messages)", e.Reason, e.Addr, e.Unacked)
	}
	return fmt.Sprintf("%v: %s", e.Reason, e.Addr)
}

// Unwrap lets errors.Is match both ErrPeerDown and the specific reason.
func (e *PeerError) Unwrap() []error { return []error{ErrPeerDown, e.Reason} }
