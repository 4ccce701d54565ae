package mesh

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Regression tests for bugs found while verifying the package.

// TestRPCDeadlineInHandlerIsTimeout: a HandleRPCWithContext handler that
// honours its context returns ctx.Err() when the caller's deadline (which
// travels with the request) passes. The caller must see a timeout
// (IsRequestTimeoutError), not a remote handler error: the handler's copy of
// the deadline is truncated to whole milliseconds, so it expires first and
// its error response used to beat the caller's own timer.
func TestRPCDeadlineInHandlerIsTimeout(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	honour := func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	a.HandleRPCWithContext(1, honour)
	b.HandleRPCWithContext(1, honour)
	for i := range 10 {
		for _, to := range []*Node{a, b} { // to itself and over loopback
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, err := a.SendRPCWithContext(ctx, 1, to.GetMyEndPoint(), nil)
			cancel()
			if !IsRequestTimeoutError(err) || IsRequestError(err) || IsSendError(err) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call %d to %s: deadline passed in a context-aware handler gave %v", i, to.GetMyEndPoint(), err)
			}
		}
	}
}
