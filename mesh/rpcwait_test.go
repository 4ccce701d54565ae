package mesh

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// callWakers returns, for the calls now in n's table, whether each has a
// waker.
func callWakers(n *Node) (with, without int) {
	n.calls.mu.Lock()
	defer n.calls.mu.Unlock()
	for _, c := range n.calls.m {
		if c.w != nil {
			with++
		} else {
			without++
		}
	}
	return with, without
}

// TestRPCWaiterModes: a call alone with no context to watch waits on a
// waker (Linux), one that overlaps another or has a context that can end
// waits on its channel; all get their answers.
func TestRPCWaiterModes(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	gate := make(chan struct{})
	b.HandleRPC(1, func(data []byte, _ string) ([]byte, error) {
		<-gate
		return data, nil
	})
	type res struct {
		resp []byte
		err  error
	}
	first := make(chan res, 1)
	go func() {
		r, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("alone"))
		first <- res{r, err}
	}()
	eventually(t, 10*time.Second, func() bool { w, wo := callWakers(a); return w+wo == 1 }, "the first call is registered")
	w, _ := callWakers(a)
	if runtime.GOOS == "linux" && w != 1 {
		t.Fatal("the only call, with no context, has no waker")
	}
	second := make(chan res, 1)
	go func() {
		r, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("overlapping"))
		second <- res{r, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	third := make(chan res, 1)
	go func() {
		r, err := a.SendRPCWithContext(ctx, 1, b.GetMyEndPoint(), []byte("context"))
		third <- res{r, err}
	}()
	eventually(t, 10*time.Second, func() bool { w, wo := callWakers(a); return w+wo == 3 }, "three calls registered")
	if w, wo := callWakers(a); wo != 2 || w > 1 {
		t.Fatalf("%d calls with a waker, %d without; want at most 1 and 2", w, wo)
	}
	close(gate)
	for name, ch := range map[string]chan res{"alone": first, "overlapping": second, "context": third} {
		r := <-ch
		if r.err != nil || !bytes.Equal(r.resp, []byte(name)) {
			t.Fatalf("%s: %q, %v", name, r.resp, r.err)
		}
	}
	// Sequential calls keep working (wakers are reused).
	for i := range 50 {
		if _, err := a.SendRPC(1, b.GetMyEndPoint(), []byte{byte(i)}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestRPCWaiterShutdown: a caller waiting on a waker inside a handler is
// failed with ErrClosed when its node stops (the calls' sweeper fails every
// call then), so the handler returns before Shutdown gives up on it.
func TestRPCWaiterShutdown(t *testing.T) {
	c := newCluster(t, 2)
	x, y := c.nodes[0], c.nodes[1]
	release := make(chan struct{})
	defer close(release)
	y.HandleRPC(2, func([]byte, string) ([]byte, error) {
		<-release
		return nil, nil
	})
	var innerErr atomic.Value
	var returned atomic.Bool
	entered := make(chan struct{})
	x.HandleRPC(1, func([]byte, string) ([]byte, error) {
		close(entered)
		_, err := x.SendRPC(2, y.GetMyEndPoint(), nil) // x's only call
		innerErr.Store(err)
		returned.Store(true)
		return nil, err
	})
	go y.SendRPC(1, x.GetMyEndPoint(), nil)
	<-entered
	eventually(t, 10*time.Second, func() bool { w, wo := callWakers(x); return w+wo == 1 }, "the inner call is registered")
	if err := x.Shutdown(); err != nil {
		t.Logf("Shutdown: %v", err)
	}
	if !returned.Load() {
		t.Fatal("the handler's call was still waiting when Shutdown returned")
	}
	if err, _ := innerErr.Load().(error); !errors.Is(err, ErrClosed) {
		t.Fatalf("inner call: %v, want ErrClosed", err)
	}
}
