package mesh

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
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

// TestSetupOnReadyCallbackCallsPackageAPI: an OnReady callback registered
// before Setup may call package-level functions. When the first sync with
// MARS completed before Setup had applied the settings made before it, the
// callback ran inside Setup while Setup held the package lock, and its
// first package-level call deadlocked the process. That ordering happens
// by chance (about 3 runs in 4 with 300,000 settings made before Setup);
// here a setting that waits for the first sync makes it certain.
func TestSetupOnReadyCallbackCallsPackageAPI(t *testing.T) {
	c := newCluster(t, 0)
	t.Setenv("DIARKIS_MARS_PORT", c.cfg.MarsPort)
	t.Setenv("DIARKIS_PORT", "0")
	withDefault(func(n *Node) {
		select {
		case <-n.Ready():
		case <-time.After(5 * time.Second):
		}
	})
	got := make(chan string, 1)
	OnReady(func() { got <- GetMyEndPoint() })
	done := make(chan error, 1)
	go func() { done <- Setup("") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Setup deadlocked: the OnReady callback ran under the package lock")
	}
	defer Shutdown()
	select {
	case addr := <-got:
		if addr == "" || addr != GetMyEndPoint() {
			t.Fatalf("OnReady callback saw GetMyEndPoint() = %q, want %q", addr, GetMyEndPoint())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnReady callback did not run")
	}
}

// TestRemoveSharedDataCallbacksBeforeSetup: callbacks given to
// OnSharedDataUpdate and OnSharedDataRemove before Setup are kept for the
// default node, so removing them before Setup must be kept too; the
// removals used to be dropped and the callbacks fired anyway.
func TestRemoveSharedDataCallbacksBeforeSetup(t *testing.T) {
	c := newCluster(t, 1)
	t.Setenv("DIARKIS_MARS_PORT", c.cfg.MarsPort)
	t.Setenv("DIARKIS_PORT", "0")
	var removedCalls atomic.Int32
	removedUpdate := func(string, int16) { removedCalls.Add(1) }
	removedRemove := func(string) { removedCalls.Add(1) }
	OnSharedDataUpdate(removedUpdate)
	OnSharedDataRemove(removedRemove)
	RemoveOnSharedDataUpdate(removedUpdate)
	RemoveOnSharedDataRemove(removedRemove)
	key := fmt.Sprintf("regress-%d", time.Now().UnixNano())
	updated, removed := make(chan struct{}, 1), make(chan struct{}, 1)
	OnSharedDataUpdate(func(k string, _ int16) {
		if k == key {
			updated <- struct{}{}
		}
	})
	OnSharedDataRemove(func(k string) {
		if k == key {
			removed <- struct{}{}
		}
	})
	if err := Setup(""); err != nil {
		t.Fatal(err)
	}
	defer Shutdown()
	c.nodes[0].SetSharedData(key, 1)
	select {
	case <-updated:
	case <-time.After(3 * time.Second):
		t.Fatal("the kept OnSharedDataUpdate callback did not fire")
	}
	c.nodes[0].RemoveSharedData(key)
	select {
	case <-removed:
	case <-time.After(3 * time.Second):
		t.Fatal("the kept OnSharedDataRemove callback did not fire")
	}
	if n := removedCalls.Load(); n != 0 {
		t.Fatalf("callbacks removed before Setup fired %d times", n)
	}
}

// TestGettersFloatOutOfRange: a float64 just past the int64 or uint64
// range (2^63, 2^64: what float64(math.MaxInt64) and
// float64(math.MaxUint64) round to) does not fit, so the getters give 0.
// They used to convert it, giving math.MinInt64 for 2^63 and 2^63 for 2^64.
func TestGettersFloatOutOfRange(t *testing.T) {
	m := map[string]interface{}{
		"2^63": math.Ldexp(1, 63), "-2^63": -math.Ldexp(1, 63), "2^64": math.Ldexp(1, 64), "2^53": math.Ldexp(1, 53),
	}
	for _, c := range []struct {
		name      string
		got, want interface{}
	}{
		{"GetInt64(2^63)", GetInt64(m, "2^63"), int64(0)},
		{"GetInt(2^63)", GetInt(m, "2^63"), 0},
		{"GetInt64(-2^63)", GetInt64(m, "-2^63"), int64(math.MinInt64)},
		{"GetUint64(2^64)", GetUint64(m, "2^64"), uint64(0)},
		{"GetUint64(2^63)", GetUint64(m, "2^63"), uint64(1) << 63},
		{"GetInt64(2^53)", GetInt64(m, "2^53"), int64(1) << 53},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestPackageSettersDuringShutdown: package-level setters may run while
// another goroutine shuts the default node down (a game loop and a SIGTERM
// handler). SetNodeType, SetNodeRole, SetEndPoint, SetAppName and the
// setters built on withDefault used to look the default node up twice and
// dereference nil when Shutdown came in between.
func TestPackageSettersDuringShutdown(t *testing.T) {
	if Default() != nil {
		t.Fatal("a default node is still set up from an earlier test")
	}
	c := newCluster(t, 0)
	useMarsEnv(t, c.cfg.MarsPort)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var panics atomic.Int32
	setters := []func(){
		func() { SetNodeType("game") },
		func() { SetNodeRole(UDPRole) },
		func() { SetEndPoint("203.0.113.1:1") },
		func() { SetNodeValue("v", 1) },
	}
	for _, set := range setters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				func() {
					defer func() {
						if r := recover(); r != nil && panics.Add(1) == 1 {
							t.Errorf("setter panicked during Setup/Shutdown: %v", r)
						}
					}()
					set()
				}()
			}
		}()
	}
	for range 50 {
		if err := Setup(""); err != nil {
			t.Error(err)
			break
		}
		Shutdown()
	}
	stop.Store(true)
	wg.Wait()
	// Consume the settings made while no node was set up.
	if err := Setup(""); err != nil {
		t.Fatal(err)
	}
	Shutdown()
}

// TestShutdownNodeIsOfflineToItself: Shutdown (the mesh's SIGTERM) marks
// the node offline at MARS, so other nodes see IsNodeOffline; the node
// must agree (IsMyNodeOffline, "true if the node received SIGTERM" in the
// reference). It used to go on calling itself online.
func TestShutdownNodeIsOfflineToItself(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	if !a.IsMyNodeOnline() || a.IsMyNodeOffline() {
		t.Fatal("a running node is not online")
	}
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() bool { return b.IsNodeOffline(a.GetMyEndPoint()) || b.GetNode(a.GetMyEndPoint()) == nil },
		"the others see the shut-down node offline")
	if a.IsMyNodeOnline() || !a.IsMyNodeOffline() {
		t.Fatalf("after Shutdown: IsMyNodeOnline %v, IsMyNodeOffline %v", a.IsMyNodeOnline(), a.IsMyNodeOffline())
	}
}
