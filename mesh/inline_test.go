package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestInlineHandlers: with WithInlineHandlers, RPCs, handler errors,
// context handlers and concurrent callers work as without it,
// and a handler that blocks does not stop the node from receiving (another
// peer's request is answered meanwhile).
func TestInlineHandlers(t *testing.T) {
	c := newCluster(t, 3, WithInlineHandlers())
	a, b, srv := c.nodes[0], c.nodes[1], c.nodes[2]
	srv.HandleRPC(1, func(data []byte, _ string) ([]byte, error) { return data, nil })
	srv.HandleRPC(2, func([]byte, string) ([]byte, error) { return nil, errors.New("no such player") })
	release := make(chan struct{})
	srv.HandleRPCWithContext(3, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		select {
		case <-release:
			return []byte("released"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	addr := srv.GetMyEndPoint()

	for _, size := range []int{0, 64, 100 << 10} {
		req := bytes.Repeat([]byte{7}, size)
		resp, err := a.SendRPC(1, addr, req)
		if err != nil || !bytes.Equal(resp, req) {
			t.Fatalf("%d bytes: %d bytes back, %v", size, len(resp), err)
		}
	}
	if _, err := a.SendRPC(2, addr, nil); !IsRequestError(err) {
		t.Fatalf("handler error: %v", err)
	}

	// a's request blocks its handler; b is still served.
	blocked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := a.SendRPCWithContext(ctx, 3, addr, nil)
		if err == nil && string(resp) != "released" {
			err = fmt.Errorf("response %q", resp)
		}
		blocked <- err
	}()
	if resp, err := b.SendRPC(1, addr, []byte("b")); err != nil || string(resp) != "b" {
		t.Fatalf("b while a's handler blocks: %q, %v", resp, err)
	}
	close(release)
	if err := <-blocked; err != nil {
		t.Fatalf("blocked handler: %v", err)
	}

	// Concurrent callers from both peers.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		from := a
		if i%2 == 1 {
			from = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte(fmt.Sprint(i))
			resp, err := from.SendRPC(1, addr, msg)
			if err == nil && !bytes.Equal(resp, msg) {
				err = fmt.Errorf("request %d: response %q", i, resp)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

}

// TestInlineNeverReturningHandlerShutdown: a handler that never returns
// runs on a goroutine the transport does not wait for, so Shutdown leaves
// it after AbandonWait (as TestHostileNeverReturningHandlerShutdown checks
// for handlers on worker goroutines) and the transport still closes.
func TestInlineNeverReturningHandlerShutdown(t *testing.T) {
	c := newCluster(t, 2, WithInlineHandlers())
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

// TestInlineHandlerCallsBackItsCaller: with inline handlers, a handler
// that calls back the node whose request it serves gets its answer at
// once. The handler must not hold the delivery of that peer's messages
// while it runs: the answer would wait behind it until the call timed out
// (issue 21: 3.0 s instead of 0.4 ms). The inner call has the default
// timeout, so it answers only if nothing waits for one.
func TestInlineHandlerCallsBackItsCaller(t *testing.T) {
	c := newCluster(t, 2, WithInlineHandlers())
	a, b := c.nodes[0], c.nodes[1]
	a.HandleRPC(2, func(data []byte, _ string) ([]byte, error) {
		return append([]byte("a:"), data...), nil
	})
	b.HandleRPC(1, func(data []byte, sender string) ([]byte, error) {
		return b.SendRPC(2, sender, data) // back to the caller, on the same session
	})
	var took []time.Duration
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		msg := []byte(fmt.Sprint(i))
		resp, err := a.SendRPCWithContext(ctx, 1, b.GetMyEndPoint(), msg)
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if want := "a:" + string(msg); string(resp) != want {
			t.Fatalf("call %d: %q, want %q", i, resp, want)
		}
		took = append(took, time.Since(start))
	}
	t.Logf("round trips with a call back: %v", took)
}
