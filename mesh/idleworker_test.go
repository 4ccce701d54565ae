package mesh

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func idleWorkers(p *idlePool) []*parkedWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*parkedWorker(nil), p.idle...)
}

// TestIdleWorkerReused: after a request a worker parks; the next request
// on an idle node wakes it instead of starting a goroutine; concurrent
// requests still get goroutines of their own; the parked workers end when
// the node stops.
func TestIdleWorkerReused(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("workers park on wakers on Linux only")
	}
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	var mu sync.Mutex
	var gate chan struct{}
	b.HandleRPC(1, func(data []byte, _ string) ([]byte, error) {
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil {
			<-g
		}
		return data, nil
	})
	if _, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(idleWorkers(&b.in.workers)) == 1 }, "a worker parks")
	parked := idleWorkers(&b.in.workers)[0]
	for i := range 20 {
		if _, err := a.SendRPC(1, b.GetMyEndPoint(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() bool { return len(idleWorkers(&b.in.workers)) == 1 }, "the worker parks again")
		if idleWorkers(&b.in.workers)[0] != parked {
			t.Fatal("a request on an idle node did not go to the parked worker")
		}
	}
	// Concurrent requests: each handler blocks until all have started.
	const conc = 6
	mu.Lock()
	gate = make(chan struct{})
	g := gate
	mu.Unlock()
	errs := make(chan error, conc)
	for i := range conc {
		go func() {
			_, err := a.SendRPC(1, b.GetMyEndPoint(), []byte{byte(i)})
			errs <- err
		}()
	}
	eventually(t, 10*time.Second, func() bool {
		b.in.mu.Lock()
		defer b.in.mu.Unlock()
		return b.in.running == conc
	}, "%d handlers run at once", conc)
	close(g)
	for range conc {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool { return len(idleWorkers(&b.in.workers)) == maxIdleWorkers }, "at most %d workers park", maxIdleWorkers)
	if err := b.Shutdown(); err != nil {
		t.Logf("Shutdown: %v", err)
	}
	left, closed := b.in.workers.parkedCount()
	if left != 0 || !closed {
		t.Fatalf("after Shutdown: %d parked workers, closed %v", left, closed)
	}
}

// TestSubscriptionWorkerParks: a subscription's worker parks once its
// queue is empty and the next publish to an idle node wakes it instead of
// starting a goroutine; every message still arrives, in order; the
// parked workers end when the node stops.
func TestSubscriptionWorkerParks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("workers park on wakers on Linux only")
	}
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	var got topicLog
	if _, err := b.Subscribe("room.*", got.handle); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	publish := func(i int) {
		t.Helper()
		if err := a.Publish(ctx, "room.1", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() bool { return got.count() == i+1 }, "message %d arrives", i)
		eventually(t, 10*time.Second, func() bool { return len(idleWorkers(&b.ps.workers)) == 1 }, "the worker parks")
	}
	publish(0)
	parked := idleWorkers(&b.ps.workers)[0]
	for i := 1; i <= 20; i++ {
		publish(i)
		if idleWorkers(&b.ps.workers)[0] != parked {
			t.Fatal("a publish to an idle node did not go to the parked worker")
		}
	}
	// A burst: in order, exactly once.
	for i := 21; i < 500; i++ {
		if err := a.Publish(ctx, "room.1", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool { return got.count() == 500 }, "the burst arrives")
	for i, p := range got.payloads() {
		if p != strconv.Itoa(i) {
			t.Fatalf("message %d is %q", i, p)
		}
	}
	if err := b.Shutdown(); err != nil {
		t.Logf("Shutdown: %v", err)
	}
	if left, closed := b.ps.workers.parkedCount(); left != 0 || !closed {
		t.Fatalf("after Shutdown: %d parked workers, closed %v", left, closed)
	}
}
