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
	b.HandleRPC(3, func([]byte, string) ([]byte, error) { time.Sleep(time.Second); return nil, nil })
	var handlerSawCancel = make(chan error, 1)
	b.HandleRPCWithContext(4, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
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
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
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

func TestRPCUnhealthyWithoutMars(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	c.mars.Close()
	eventually(t, 5*time.Second, func() bool { return !a.IsPartOfCluster() }, "a notices MARS is gone")
	_, err := a.SendRPC(1, b.GetMyEndPoint(), nil)
	if !IsUnhealthyError(err) || IsSendError(err) {
		t.Fatalf("RPC without MARS: %v", err)
	}
	// Lookups still answer from the last view.
	if got := a.GetNodeAddresses(nil); len(got) != 2 {
		t.Fatalf("stale view lists %v", got)
	}
}
