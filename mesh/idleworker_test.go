package mesh

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

func idleWorkers(n *Node) []*idleWorker {
	n.in.mu.Lock()
	defer n.in.mu.Unlock()
	return append([]*idleWorker(nil), n.in.idle...)
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
	eventually(t, 10*time.Second, func() bool { return len(idleWorkers(b)) == 1 }, "a worker parks")
	parked := idleWorkers(b)[0]
	for i := range 20 {
		if _, err := a.SendRPC(1, b.GetMyEndPoint(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() bool { return len(idleWorkers(b)) == 1 }, "the worker parks again")
		if idleWorkers(b)[0] != parked {
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
	eventually(t, 10*time.Second, func() bool { return len(idleWorkers(b)) == maxIdleWorkers }, "at most %d workers park", maxIdleWorkers)
	if err := b.Shutdown(); err != nil {
		t.Logf("Shutdown: %v", err)
	}
	b.in.mu.Lock()
	left, closed := len(b.in.idle), b.in.idleClosed
	b.in.mu.Unlock()
	if left != 0 || !closed {
		t.Fatalf("after Shutdown: %d parked workers, closed %v", left, closed)
	}
}
