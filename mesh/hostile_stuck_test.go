package mesh

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Hostile: a handler that never returns (until the test lets it).

// TestHostileStuckHandler: peer A calls an RPC handler on X that never
// returns, 40 times at once. X runs at most its per-peer share of
// handlers for A, pauses A's session at A's inbound bound (a slow-consumer
// event), and meanwhile serves peer B's RPCs and commands. Once the handler
// returns, A is resumed and every one of its calls completes.
func TestHostileStuckHandler(t *testing.T) {
	lim := WithInboundLimits(InboundLimits{PeerCount: 16, PeerBytes: 1 << 20, MaxHandlers: 8})
	c := newCluster(t, 3, lim)
	x, a, b := c.nodes[0], c.nodes[1], c.nodes[2]
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the cluster shuts down

	var inside, most atomic.Int32
	x.HandleRPC(1, func([]byte, string) ([]byte, error) {
		now := inside.Add(1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		<-release
		inside.Add(-1)
		return []byte("late"), nil
	})
	x.HandleRPC(2, func(d []byte, _ string) ([]byte, error) { return d, nil })
	var cmds atomic.Int32
	x.SetCommandHandler(3, func([]byte, string) ([]byte, error) { cmds.Add(1); return nil, nil })

	const stuck = 40
	errs := make(chan error, stuck)
	for range stuck {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := a.SendRPCWithContext(ctx, 1, x.GetMyEndPoint(), nil)
			errs <- err
		}()
	}
	eventually(t, 20*time.Second, func() bool { return x.SlowConsumerEvents() > 0 }, "X pauses A")

	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := b.SendRPCWithContext(ctx, 2, x.GetMyEndPoint(), []byte{byte(i)})
		cancel()
		if err != nil || len(resp) != 1 || resp[0] != byte(i) {
			t.Fatalf("B's RPC %d while A is stuck: %q, %v", i, resp, err)
		}
		if err := b.Send(3, x.GetMyEndPoint(), []byte("hi")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool { return cmds.Load() == 20 }, "X handles B's 20 commands")
	if got, peerMax := most.Load(), int32(x.in.peerMax); got > peerMax {
		t.Errorf("%d handlers ran at once for A, limit %d", got, peerMax)
	}

	unblock()
	for range stuck {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("A's call after the handler returned: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("A's calls did not complete after the handler returned")
		}
	}
	t.Logf("slow-consumer events %d, at most %d handlers at once for A", x.SlowConsumerEvents(), most.Load())
}

// TestHostileStuckHandlerShutdown: a context-aware handler that waits for
// its context does not hold Shutdown past the retry timeout.
func TestHostileStuckHandlerShutdown(t *testing.T) {
	c := newCluster(t, 2, WithInboundLimits(InboundLimits{MaxHandlers: 4}))
	x, a := c.nodes[0], c.nodes[1]
	entered := make(chan struct{}, 8)
	x.HandleRPCWithContext(1, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	for range 8 {
		go a.SendRPC(1, x.GetMyEndPoint(), nil)
	}
	<-entered
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- x.Shutdown() }()
	select {
	case <-done:
		t.Logf("Shutdown took %v", time.Since(start))
	case <-time.After(time.Duration(c.cfg.RetryTimeout)*time.Millisecond + 20*time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// TestHostileNeverReturningHandlerShutdown: a plain handler that ignores
// everything and never returns does not hold Shutdown past its bound.
func TestHostileNeverReturningHandlerShutdown(t *testing.T) {
	c := newCluster(t, 2)
	x, a := c.nodes[0], c.nodes[1]
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	x.HandleRPC(1, func([]byte, string) ([]byte, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release // nothing closes it before Shutdown returns
		return nil, nil
	})
	defer close(release) // lets the abandoned goroutine end before the leak check
	go a.SendRPC(1, x.GetMyEndPoint(), nil)
	<-entered
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- x.Shutdown() }()
	bound := time.Duration(c.cfg.RetryTimeout)*time.Millisecond + AbandonWait
	select {
	case <-done:
		t.Logf("Shutdown took %v (bound %v plus closing)", time.Since(start), bound)
	case <-time.After(bound + 20*time.Second):
		t.Fatal("Shutdown did not return")
	}
}
