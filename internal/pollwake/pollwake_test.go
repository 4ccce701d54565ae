package pollwake

import (
	"runtime"
	"testing"
	"time"
)

func TestWakeWait(t *testing.T) {
	w := Get()
	if w == nil {
		if runtime.GOOS == "linux" {
			t.Fatal("no waker on Linux")
		}
		t.Skip("no wakers on", runtime.GOOS)
	}
	defer Put(w)
	// Wake before Wait: Wait returns at once; two wakes count as one.
	w.Wake()
	w.Wake()
	w.Wait()
	// Wait before Wake, from another goroutine.
	done := make(chan struct{})
	go func() {
		w.Wait()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Wait returned with no Wake pending (the two wakes were not counted once)")
	case <-time.After(20 * time.Millisecond):
	}
	w.Wake()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Wake")
	}
}

// TestPoolBounded: the pool hands out at most maxWakers, then nil, and
// reuses what is put back.
func TestPoolBounded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no wakers on", runtime.GOOS)
	}
	var got []*Waker
	for {
		w := Get()
		if w == nil {
			break
		}
		got = append(got, w)
		if len(got) > maxWakers {
			t.Fatalf("more than %d wakers", maxWakers)
		}
	}
	if pool.made != maxWakers {
		t.Fatalf("made %d wakers, want %d", pool.made, maxWakers)
	}
	Put(got[0])
	if w := Get(); w != got[0] {
		t.Fatal("a waker put back was not reused")
	}
	for _, w := range got {
		Put(w)
	}
}

// TestPingPong: two goroutines hand a turn back and forth through two
// wakers many times; a Wake lost between the flag and the poller's edge
// would hang it.
func TestPingPong(t *testing.T) {
	a, b := Get(), Get()
	if a == nil || b == nil {
		if runtime.GOOS == "linux" {
			t.Fatal("no waker on Linux")
		}
		t.Skip("no wakers on", runtime.GOOS)
	}
	defer Put(a)
	defer Put(b)
	const rounds = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range rounds {
			a.Wait()
			b.Wake()
		}
	}()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range rounds {
			a.Wake()
			b.Wait()
		}
	}()
	select {
	case <-finished:
	case <-time.After(60 * time.Second):
		t.Fatal("ping-pong stalled: a Wake was lost")
	}
	<-done
}
