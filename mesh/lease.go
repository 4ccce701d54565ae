package mesh

import (
	"context"
	"fmt"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// Leases: a key granted to one node at a time, with a fencing token (see
// mars.Lease for the timing guarantees). Use a lease where exactly one
// node must act for a key (own a room, run a singleton job) and fence the
// writes it protects with Token; Lost fires before MARS may grant the key
// to another node, as long as this process runs (a stopped process sees
// it late: that is what the token is for).

// Lease is a key this node holds (see mars.Lease).
type Lease = mars.Lease

// Claim asks MARS for the lease on key for ttl (mars.MinLeaseTTL up to
// MARS's maximum, 60 s by default). It fails with ErrLeaseHeld when another
// node holds it (KVError.Holder names it) and with ErrNotLive unless MARS
// lists this node online: guests and draining nodes may not claim. The
// lease renews itself every ttl/3 until Release, until it is lost, or until
// the node shuts down (Shutdown releases it once the node has drained and
// its readiness check passed); a holder that dies
// leaves the key free after ttl.
func (n *Node) Claim(ctx context.Context, key string, ttl time.Duration) (*Lease, error) {
	if n.life.closed.Load() {
		return nil, ErrClosed
	}
	if n.life.draining.Load() {
		return nil, fmt.Errorf("%w: the node is draining", ErrNotLive)
	}
	l, err := n.mc.Claim(ctx, key, ttl)
	return l, kvErr(err)
}

// LeaseInfo is a lease as MARS lists it: name, holder, token.
type LeaseInfo = mars.LeaseInfo

// ListLeases returns every lease MARS holds under prefix (any node's).
func (n *Node) ListLeases(ctx context.Context, prefix string) ([]LeaseInfo, error) {
	if n.life.closed.Load() {
		return nil, ErrClosed
	}
	out, err := n.mc.ListLeases(ctx, prefix)
	return out, kvErr(err)
}

// Leases returns the leases the node holds.
func (n *Node) Leases() []*Lease { return n.mc.Leases() }

// ReleaseAll releases every lease the node holds and waits until MARS
// confirmed or ctx ends.
func (n *Node) ReleaseAll(ctx context.Context) error { return kvErr(n.mc.ReleaseAll(ctx)) }

// releaseLeases is Shutdown's first step: other nodes can take the node's
// keys over at once instead of after their TTLs.
func (n *Node) releaseLeases(ctx context.Context) {
	if len(n.mc.Leases()) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, kvReleaseWait)
	defer cancel()
	if err := n.mc.ReleaseAll(ctx); err != nil {
		n.log.Warn("mesh: shutdown could not release every lease (they expire after their TTL)", "err", err)
	}
}

// Claim is Node.Claim on the default node.
func Claim(ctx context.Context, key string, ttl time.Duration) (*Lease, error) {
	n := Default()
	if n == nil {
		return nil, ErrNotSetup
	}
	return n.Claim(ctx, key, ttl)
}

// ReleaseAll is Node.ReleaseAll on the default node.
func ReleaseAll(ctx context.Context) error {
	n := Default()
	if n == nil {
		return ErrNotSetup
	}
	return n.ReleaseAll(ctx)
}
