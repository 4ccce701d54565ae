package mesh

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Readiness. A node is healthy (IsPartOfCluster) from its first sync with
// MARS until Shutdown, whatever happens to MARS in between. It is serving
// (Serving) while it is healthy and not draining: what an orchestrator's
// readiness probe asks (`/readyz`, `node healthcheck -ready`), so a MARS
// outage does not take serving nodes out of rotation. Contact with MARS is
// a separate signal (InTouchWithMars, `/v1/status`, the metric
// marsmesh_node_in_touch_with_mars). Every answer to HealthCheck carries both, which
// ReadyCheck decodes.

// WaitReady waits until the node is ready: its view lists it online (so its
// lookups see it and every node that syncs from now on does too), or ctx is
// done (its error is returned, wrapped with ErrUnhealthy) or the node shuts
// down (ErrClosed). A guest is ready after its first sync.
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

// WaitReady waits until the default node is ready or ctx is done; see
// Node.WaitReady.
func WaitReady(ctx context.Context) error {
	n := Default()
	if n == nil {
		return fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup)
	}
	return n.WaitReady(ctx)
}

// Serving reports whether the node serves: it is ready (WaitReady) and
// neither draining nor shut down. It is what readiness probes ask.
func (n *Node) Serving() bool { return n.IsPartOfCluster() && !n.life.draining.Load() }

// SyncState is a node's state as its health-check answer carries it.
type SyncState struct {
	// Synced: the node has synced with MARS at least once.
	Synced bool
	// InTouch: MARS answered within the node's accepted span (three sync
	// intervals).
	InTouch bool
	// Serving: synced and not draining (Node.Serving): the node is ready
	// in the Kubernetes sense. A node older than this field reports
	// Serving as InTouch.
	Serving bool
	// Age is how long ago MARS last answered (0 when never).
	Age time.Duration
}

// Health answer flags.
const (
	healthSynced     = 1 << 0
	healthInTouch    = 1 << 1
	healthServing    = 1 << 2
	healthHasServing = 1 << 7 // the answer carries healthServing (older nodes do not)
)

// healthAnswer is the body of the answer to a health check:
// [flags u8, see above][age of the last sync, ms u32].
func (n *Node) healthAnswer() []byte {
	flags := byte(healthHasServing)
	age, ok := n.mc.SyncAge()
	if ok {
		flags |= healthSynced
	}
	if n.mc.InTouch() {
		flags |= healthInTouch
	}
	if n.Serving() {
		flags |= healthServing
	}
	b := []byte{flags}
	return binary.BigEndian.AppendUint32(b, uint32(min(age.Milliseconds(), math.MaxUint32)))
}

func parseHealthAnswer(p []byte) (SyncState, error) {
	if len(p) != 5 {
		return SyncState{}, fmt.Errorf("%w: health answer of %d bytes, want 5 (is the node older than this prober?)", ErrRequest, len(p))
	}
	st := SyncState{
		Synced:  p[0]&healthSynced != 0,
		InTouch: p[0]&healthInTouch != 0,
		Serving: p[0]&healthServing != 0,
		Age:     time.Duration(binary.BigEndian.Uint32(p[1:])) * time.Millisecond,
	}
	if p[0]&healthHasServing == 0 {
		st.Serving = st.InTouch // an older node: readiness was "in touch"
	}
	return st, nil
}

// ReadyCheck sends the health-check request to the node at addr and
// returns its state: a readiness probe is ready when Serving holds.
func (n *Node) ReadyCheck(ctx context.Context, addr string) (SyncState, error) {
	resp, err := n.request(ctx, time.Time{}, tableInternal, internalHealth, addr, nil)
	if err != nil {
		return SyncState{}, err
	}
	return parseHealthAnswer(resp)
}
