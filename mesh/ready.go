package mesh

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Readiness. A node is healthy (IsPartOfCluster) from its first sync with
// MARS until Shutdown, whatever happens to MARS in between. Readiness in
// the Kubernetes sense, "in touch with MARS", is what the health-check
// answer carries: every answer to HealthCheck holds the node's sync state,
// which ReadyCheck decodes (`node healthcheck -ready`).

// WaitReady waits until the node has synced with MARS, ctx is done (its
// error is returned, wrapped with ErrUnhealthy) or the node shuts down
// (ErrClosed).
func (n *Node) WaitReady(ctx context.Context) error {
	select {
	case <-n.mc.Ready():
		return nil
	default:
	}
	select {
	case <-n.mc.Ready():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: no sync with MARS yet: %w", ErrUnhealthy, ctx.Err())
	case <-n.life.done:
		return ErrClosed
	}
}

// WaitReady waits until the default node has synced with MARS or ctx is
// done; see Node.WaitReady.
func WaitReady(ctx context.Context) error {
	n := Default()
	if n == nil {
		return fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup)
	}
	return n.WaitReady(ctx)
}

// SyncState is a node's relation to MARS, as its health-check answer
// carries it.
type SyncState struct {
	// Synced: the node has synced with MARS at least once.
	Synced bool
	// InTouch: MARS answered within the node's accepted span (three sync
	// intervals): the node is ready.
	InTouch bool
	// Age is how long ago MARS last answered (0 when never).
	Age time.Duration
}

// healthAnswer is the body of the answer to a health check:
// [flags u8: 1 synced, 2 in touch][age of the last sync, ms u32].
func (n *Node) healthAnswer() []byte {
	var flags byte
	age, ok := n.mc.SyncAge()
	if ok {
		flags |= 1
	}
	if n.mc.InTouch() {
		flags |= 2
	}
	b := []byte{flags}
	return binary.BigEndian.AppendUint32(b, uint32(min(age.Milliseconds(), math.MaxUint32)))
}

func parseHealthAnswer(p []byte) (SyncState, error) {
	if len(p) != 5 {
		return SyncState{}, fmt.Errorf("%w: health answer of %d bytes, want 5 (is the node older than this prober?)", ErrRequest, len(p))
	}
	return SyncState{
		Synced:  p[0]&1 != 0,
		InTouch: p[0]&2 != 0,
		Age:     time.Duration(binary.BigEndian.Uint32(p[1:])) * time.Millisecond,
	}, nil
}

// ReadyCheck sends the health-check request to the node at addr and
// returns its sync state: a readiness probe is ready when InTouch holds.
func (n *Node) ReadyCheck(ctx context.Context, addr string) (SyncState, error) {
	resp, err := n.request(ctx, time.Time{}, tableInternal, internalHealth, addr, nil)
	if err != nil {
		return SyncState{}, err
	}
	return parseHealthAnswer(resp)
}
