package dispatch

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// ev is a test event: a key moving from old to new.
type ev struct {
	key      string
	old, new int
}

func merge(o, n ev) (ev, bool) {
	m := ev{key: o.key, old: o.old, new: n.new}
	return m, m.old != m.new
}

type recorder struct {
	mu  sync.Mutex
	got []ev
}

func (r *recorder) run(e ev) {
	r.mu.Lock()
	r.got = append(r.got, e)
	r.mu.Unlock()
}

func (r *recorder) events() []ev {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor polls cond; a condition that never holds ends in the test
// binary's timeout, with every goroutine's stack.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(100 * time.Microsecond)
	}
	t.Logf("done: %s", what)
}

func newLane(d *Dispatcher, limit int, run func(ev)) *Lane[string, ev] {
	return NewLane(d, LaneConfig[string, ev]{Limit: limit, Run: run, Key: func(e ev) string { return e.key }, Merge: merge})
}

func TestLaneDeliversInOrder(t *testing.T) {
	d := New(nil)
	var r recorder
	l := newLane(d, 1<<20, r.run)
	var want []ev
	for i := range 1000 {
		e := ev{key: fmt.Sprint(i % 7), old: i, new: i + 1}
		want = append(want, e)
		l.Post(e)
	}
	waitFor(t, "all delivered", func() bool { return len(r.events()) == len(want) })
	if got := r.events(); !slices.Equal(got, want) {
		t.Fatalf("order lost")
	}
	if !d.Close(time.Minute) {
		t.Fatal("close did not finish")
	}
}

// A lane behind its limit merges per key: the subscriber gets, per key,
// the first old state and the latest new one, and nothing in between.
func TestLaneCoalescesWhenBehind(t *testing.T) {
	d := New(nil)
	defer d.Close(time.Minute)
	release := make(chan struct{})
	var r recorder
	first := true
	l := newLane(d, 4, func(e ev) {
		if first {
			first = false
			<-release
		}
		r.run(e)
	})
	l.Post(ev{"block", 0, 1}) // the subscriber is stuck on this one
	waitFor(t, "stuck", func() bool { return l.Pending() == 0 })
	for i := range 100 {
		l.Post(ev{"a", i, i + 1})
		l.Post(ev{"b", 10 * i, 10 * (i + 1)})
	}
	l.Post(ev{"c", 1, 2})
	l.Post(ev{"c", 2, 1}) // back where it was: dropped
	if n := l.Pending(); n != 2 {
		t.Fatalf("pending %d, want 2 (one per key)", n)
	}
	close(release)
	want := []ev{{"block", 0, 1}, {"a", 0, 100}, {"b", 0, 1000}}
	waitFor(t, "delivered", func() bool { return len(r.events()) >= len(want) })
	if got := r.events(); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Caught up: back to plain order.
	l.Post(ev{"a", 100, 101})
	l.Post(ev{"a", 101, 102})
	waitFor(t, "delivered", func() bool { return len(r.events()) == 5 })
}

// A subscriber that blocks does not hold up another lane.
func TestSlowLaneDoesNotDelayOthers(t *testing.T) {
	d := New(nil)
	stuck := make(chan struct{})
	slow := newLane(d, 8, func(ev) { <-stuck })
	var r recorder
	fast := newLane(d, 1<<20, r.run)
	for i := range 1000 {
		slow.Post(ev{"k", i, i + 1})
		fast.Post(ev{"k", i, i + 1})
	}
	waitFor(t, "fast lane delivered", func() bool { return len(r.events()) == 1000 })
	if slow.Pending() > 1 {
		t.Fatalf("slow lane holds %d events, want at most 1 (coalesced)", slow.Pending())
	}
	close(stuck)
	d.Close(time.Minute)
}

func TestPanickingCallbackIsContained(t *testing.T) {
	d := New(nil)
	var r recorder
	l := newLane(d, 8, func(e ev) {
		if e.new == 1 {
			panic("user bug")
		}
		r.run(e)
	})
	l.Post(ev{"a", 0, 1})
	l.Post(ev{"a", 1, 2})
	waitFor(t, "second delivered", func() bool { return len(r.events()) == 1 })
	if d.Panics() != 1 {
		t.Fatalf("panics %d", d.Panics())
	}
	d.Close(time.Minute)
}

// A channel lane ends (OnEnd) when the dispatcher closes, even while its
// reader never reads, and posts after Close are dropped.
func TestChannelLaneEndsWithDispatcher(t *testing.T) {
	d := New(nil)
	ch := make(chan ev)
	ended := make(chan struct{})
	var once sync.Once
	l := NewLane(d, LaneConfig[string, ev]{Limit: 2, Key: func(e ev) string { return e.key }, Merge: merge,
		Run: func(e ev) {
			select {
			case ch <- e:
			case <-d.Done():
			}
		},
		OnEnd: func() { once.Do(func() { close(ended) }) },
	})
	for i := range 50 {
		l.Post(ev{fmt.Sprint(i % 3), i, i + 1})
	}
	if !d.Close(time.Minute) {
		t.Fatal("close waited on a reader that never reads")
	}
	<-ended
	l.Post(ev{"x", 0, 1})
	if l.Pending() != 0 {
		t.Fatal("post after close was queued")
	}
}

func TestLaneCloseRunsOnEndOnce(t *testing.T) {
	d := New(nil)
	defer d.Close(time.Minute)
	var ends int
	var mu sync.Mutex
	var r recorder
	l := NewLane(d, LaneConfig[string, ev]{Key: func(e ev) string { return e.key }, Merge: merge, Run: r.run,
		OnEnd: func() { mu.Lock(); ends++; mu.Unlock() }})
	l.Post(ev{"a", 0, 1})
	l.Close()
	l.Close()
	waitFor(t, "ended", func() bool { mu.Lock(); defer mu.Unlock(); return ends == 1 })
	if got := r.events(); len(got) != 1 {
		t.Fatalf("queued event before Close not delivered: %v", got)
	}
	d.Close(time.Minute)
	mu.Lock()
	defer mu.Unlock()
	if ends != 1 {
		t.Fatalf("OnEnd ran %d times", ends)
	}
}
