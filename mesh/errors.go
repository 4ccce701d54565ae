package mesh

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the mesh returns wraps at most one of the
// first four or ErrDraining, so the predicates below are mutually
// exclusive, and errors.Is works on all of them.
var (
	// ErrSend: the message could not be sent or delivered (bad address,
	// too large, unreachable or dead peer, node shut down).
	ErrSend = errors.New("mesh: send failed")
	// ErrRequest: the remote handler returned an error (its message is
	// kept, see RemoteError), had no handler, or the caller cancelled.
	ErrRequest = errors.New("mesh: request failed")
	// ErrRequestTimeout: no response before the deadline.
	ErrRequestTimeout = errors.New("mesh: request timed out")
	// ErrUnhealthy: the node is not part of the cluster (it has not synced
	// with MARS yet, or it is shut down), so it refuses to start a request.
	// A MARS outage after the first sync does not make a node unhealthy.
	ErrUnhealthy = errors.New("mesh: node is not part of the cluster")

	// ErrInvalidData: data is not a map, a struct (pointer), a *Parcel or []byte.
	ErrInvalidData = errors.New("mesh: invalid data type")
	// ErrNotSetup: a package-level function was called before Setup or Guest.
	ErrNotSetup = errors.New("mesh: Setup has not been called")
	// ErrClosed: the node is shut down.
	ErrClosed = errors.New("mesh: node is shut down")
	// ErrDraining: the remote node is draining (shutting down): it refused
	// the request or stream at once, without running a handler, so the
	// caller can go to another node. It is none of the four kinds above.
	ErrDraining = errors.New("mesh: node is draining")
)

// IsSendError reports whether err is or contains a send error (Send,
// USend, SendMany, USendMany, and requests that could not reach their node).
func IsSendError(err error) bool { return errors.Is(err, ErrSend) }

// IsRequestError reports whether err is or contains a request error: the
// remote handler failed (or was missing), or the caller cancelled.
func IsRequestError(err error) bool { return errors.Is(err, ErrRequest) }

// IsRequestTimeoutError reports whether err is or contains a request timeout.
func IsRequestTimeoutError(err error) bool { return errors.Is(err, ErrRequestTimeout) }

// IsUnhealthyError reports whether err is or contains the mesh health error.
func IsUnhealthyError(err error) bool { return errors.Is(err, ErrUnhealthy) }

// IsDraining reports whether err says the remote node is draining: it did
// not run the request (or stream), and another node may.
func IsDraining(err error) bool { return errors.Is(err, ErrDraining) }

func drainingErr(cmd uint16, addr string) error {
	return fmt.Errorf("%w: command %d to %s: not run", ErrDraining, cmd, addr)
}

// RemoteError is the error a remote handler returned, as the caller sees it.
type RemoteError struct {
	Addr    string // the node that ran the handler
	Cmd     uint16
	Message string // the handler's error text
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("mesh: command %d on %s: %s", e.Cmd, e.Addr, e.Message)
}

// Unwrap makes IsRequestError true.
func (e *RemoteError) Unwrap() error { return ErrRequest }

func sendErr(addr string, cause error) error {
	return fmt.Errorf("%w: %s: %w", ErrSend, addr, cause)
}
