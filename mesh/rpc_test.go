package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

func TestRPCEcho(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleRPC(1, func(data []byte, sender string) ([]byte, error) {
		if sender != a.GetMyEndPoint() {
			return nil, fmt.Errorf("sender %q, want %q", sender, a.GetMyEndPoint())
		}
		return data, nil
	})
	for _, size := range []int{0, 64, 1 << 20, MaxMessageSize} {
		req := bytes.Repeat([]byte{byte(size)}, size)
		// 20 MB each way can outlast SendRPC's 3 s under -race on a busy
		// machine; the size limits are what this test checks.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		resp, err := a.SendRPCWithContext(ctx, 1, b.GetMyEndPoint(), req)
		cancel()
		t.Logf("%d bytes: round trip %v", size, time.Since(start))
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(resp, req) {
			t.Fatalf("%d bytes: echo of %d bytes differs", size, len(resp))
		}
	}
	_, err := a.SendRPC(1, b.GetMyEndPoint(), make([]byte, MaxMessageSize+1))
	if !IsSendError(err) || IsRequestError(err) || IsRequestTimeoutError(err) {
		t.Fatalf("oversized RPC: %v", err)
	}
}

func TestRPCErrorsAreClassified(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleRPC(2, func([]byte, string) ([]byte, error) { return nil, errors.New("no such player") })
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // before the cluster closes
	b.HandleRPC(3, func([]byte, string) ([]byte, error) { <-stuck; return nil, nil })
	var handlerSawCancel = make(chan error, 1)
	handlerRuns := make(chan struct{}, 1)
	b.HandleRPCWithContext(4, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		handlerRuns <- struct{}{}
		<-ctx.Done()
		handlerSawCancel <- ctx.Err()
		return nil, ctx.Err()
	})
	addr := b.GetMyEndPoint()

	_, err := a.SendRPC(2, addr, nil)
	var re *RemoteError
	if !IsRequestError(err) || IsSendError(err) || IsRequestTimeoutError(err) || !errors.As(err, &re) || re.Message != "no such player" {
		t.Fatalf("handler error: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = a.SendRPCWithContext(ctx, 3, addr, nil)
	if !IsRequestTimeoutError(err) || IsRequestError(err) || IsSendError(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() { <-handlerRuns; cancel() }()
	start := time.Now()
	_, err = a.SendRPCWithContext(ctx, 4, addr, nil)
	if !errors.Is(err, context.Canceled) || !IsRequestError(err) || IsRequestTimeoutError(err) {
		t.Fatalf("cancel: %v", err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("cancel returned after %v", el)
	}
	select {
	case herr := <-handlerSawCancel:
		if !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler context ended with %v", herr)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}

	_, err = a.SendRPC(99, addr, nil)
	if !IsRequestError(err) {
		t.Fatalf("no handler: %v", err)
	}

	// The caller's deadline travels: the handler sees it.
	deadlineSeen := make(chan time.Duration, 1)
	b.HandleRPCWithContext(5, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		dl, _ := ctx.Deadline()
		deadlineSeen <- time.Until(dl)
		return nil, nil
	})
	ctx, cancel = context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := a.SendRPCWithContext(ctx, 5, addr, nil); err != nil {
		t.Fatal(err)
	}
	if left := <-deadlineSeen; left <= 0 || left > 700*time.Millisecond {
		t.Fatalf("handler saw %v left, want (0, 700ms]", left)
	}
}

func TestRPCUnreachable(t *testing.T) {
	c := newCluster(t, 1)
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, err = c.nodes[0].SendRPC(1, silent.LocalAddr().String(), []byte("x"))
	if !IsSendError(err) || IsRequestTimeoutError(err) || IsRequestError(err) {
		t.Fatalf("unreachable: %v", err)
	}
	_, err = c.nodes[0].SendRPC(1, "not an address", nil)
	if !IsSendError(err) {
		t.Fatalf("bad address: %v", err)
	}
}

// TestRPCWorksWithoutMars: a MARS outage does not make a synced node
// unhealthy (issue 13; before, every RPC failed with IsUnhealthyError
// about 3 s after MARS stopped). Unhealthy means: before the first sync,
// or after Shutdown.
func TestRPCWorksWithoutMars(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	c.mars.Close()
	eventually(t, 5*time.Second, func() bool { return !a.InTouchWithMars() }, "a notices MARS is gone")
	if !a.IsPartOfCluster() {
		t.Fatal("a synced node turned unhealthy during a MARS outage")
	}
	if got, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("x")); err != nil || string(got) != "x" {
		t.Fatalf("RPC without MARS: %q, %v", got, err)
	}
	// Lookups still answer from the last view.
	if got := a.GetNodeAddresses(nil); len(got) != 2 {
		t.Fatalf("stale view lists %v", got)
	}
	st, err := b.ReadyCheck(context.Background(), a.GetMyEndPoint())
	if err != nil || !st.Synced || st.InTouch {
		t.Fatalf("ReadyCheck during the outage: %+v, %v; want synced, not in touch", st, err)
	}
	b.Shutdown()
	if b.IsPartOfCluster() {
		t.Fatal("healthy after Shutdown")
	}
}

// TestUnhealthyBeforeFirstSync: a node whose MARS never answers refuses
// requests, and WaitReady bounds the wait.
func TestUnhealthyBeforeFirstSync(t *testing.T) {
	c := newCluster(t, 1)
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	n, err := New(testConfig(uint16(silent.LocalAddr().(*net.UDPAddr).Port)), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	if n.IsPartOfCluster() {
		t.Fatal("healthy before any sync")
	}
	if _, err := n.SendRPC(1, c.nodes[0].GetMyEndPoint(), nil); !IsUnhealthyError(err) {
		t.Fatalf("RPC before the first sync: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.WaitReady(ctx); !IsUnhealthyError(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady with MARS silent: %v", err)
	}
	st, err := c.nodes[0].ReadyCheck(context.Background(), n.GetMyEndPoint())
	if err != nil || st.Synced || st.InTouch {
		t.Fatalf("ReadyCheck of a node never synced: %+v, %v", st, err)
	}
	if err := c.nodes[0].WaitReady(context.Background()); err != nil {
		t.Fatalf("WaitReady of a synced node: %v", err)
	}
}
