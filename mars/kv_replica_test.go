package mars

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Two replicas over one MemoryStore: writes through either are read on the
// other, CAS counters from two nodes end exactly at the number of
// acknowledged increments through a replica's death, a watcher on the
// surviving replica sees every change once in order, and leases hold.
func TestKVReplicas(t *testing.T) {
	ms := NewMemoryStore()
	st1, st2 := ms.Session(), ms.Session()
	defer st2.Close()
	s1 := startServer(t, "", storeOpts(st1))
	s2 := startServer(t, "", storeOpts(st2))
	cfg := ClientConfig{Interval: fastInterval, FailoverAfter: 300 * time.Millisecond}
	a := readyNode(t, fmt.Sprintf("%s,%s", s1.Addr(), s2.Addr()), cfg)
	b := readyNode(t, fmt.Sprintf("%s,%s", s2.Addr(), s1.Addr()), cfg)
	w := readyNode(t, fmt.Sprintf("%s,%s", s2.Addr(), s1.Addr()), cfg)
	ctx := ctxT(t)

	r, err := a.c.Put(ctx, "k", []byte("a"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := a.c.Get(ctx, "k"); err != nil || e.Rev != r {
		t.Fatalf("own read: %+v %v", e, err)
	}
	waitFor(t, 5*time.Second, "the other replica to hold the put", func() bool {
		e, err := b.c.Get(ctx, "k")
		return err == nil && e.Rev == r
	})
	events, err := w.c.WatchFrom(ctx, "ctr/", r)
	if err != nil {
		t.Fatal(err)
	}

	// CAS increments from two nodes; a's replica dies halfway.
	const perNode = 60
	var mu sync.Mutex
	var acked []int64
	var wg sync.WaitGroup
	inc := func(n *testNode) {
		defer wg.Done()
		for i := 0; i < perNode; i++ {
			for {
				e, err := n.c.Get(ctx, "ctr/x")
				v, rev := 0, int64(0)
				if err == nil {
					fmt.Sscan(string(e.Value), &v)
					rev = e.Rev
				} else if !IsNotFound(err) {
					t.Error(err)
					return
				}
				nr, err := n.c.Put(ctx, "ctr/x", []byte(fmt.Sprint(v+1)), PutOptions{CAS: true, Rev: rev})
				if err == nil {
					mu.Lock()
					acked = append(acked, nr)
					mu.Unlock()
					break
				}
				if !IsConflict(err) {
					t.Error(err)
					return
				}
			}
			if n == a && i == perNode/2 {
				s1.Close()
				st1.Close()
			}
		}
	}
	wg.Add(2)
	go inc(a)
	go inc(b)
	wg.Wait()
	e, err := b.c.Get(ctx, "ctr/x")
	if err != nil || string(e.Value) != fmt.Sprint(2*perNode) {
		t.Fatalf("counter %q %v, want %d", e.Value, err, 2*perNode)
	}
	seen := map[int64]bool{}
	last := int64(0)
	for range 2 * perNode {
		ev := <-events
		if ev.Type != KVPut || ev.Rev <= last || seen[ev.Rev] {
			t.Fatalf("event %+v after rev %d", ev, last)
		}
		last = ev.Rev
		seen[ev.Rev] = true
	}
	for _, r := range acked {
		if !seen[r] {
			t.Fatalf("acknowledged revision %d not watched", r)
		}
	}

	// Leases: one holder; a dead holder's key is free after the TTL.
	l, err := b.c.Claim(ctx, "lease", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// a's record went with its replica's session: it registers again.
	waitFor(t, 10*time.Second, "a's claim to be refused as held", func() bool {
		_, err := a.c.Claim(ctx, "lease", 2*time.Second)
		if err != nil && !IsLeaseHeld(err) && !errors.Is(err, ErrNotLive) {
			t.Fatalf("second claim: %v", err)
		}
		return IsLeaseHeld(err)
	})
	time.Sleep(2500 * time.Millisecond)
	if !l.Valid() {
		t.Fatalf("renewals failed: %v", l.Err())
	}
	b.kill()
	waitFor(t, 10*time.Second, "the dead holder's lease to expire", func() bool {
		l2, err := a.c.Claim(ctx, "lease", 2*time.Second)
		if err == nil && l2.Token() <= l.Token() {
			t.Fatalf("token %d after %d", l2.Token(), l.Token())
		}
		return err == nil
	})
	_ = s2
}

// stallingStore is a store whose next writes fail as a stalled etcd's do:
// the first applies and then reports a timeout (the write committed, the
// answer was lost), the rest fail without applying. WriteIf and Update
// (releases) count their failures apart.
type stallingStore struct {
	*memSession
	fails       atomic.Int32 // WriteIf calls left to fail
	updateFails atomic.Int32 // Update calls left to fail
}

func (s *stallingStore) Update(ctx context.Context, keys []StoreKey, fn func([]StoreRecord) ([]StoreWrite, error)) (int64, error) {
	switch n := s.updateFails.Add(-1); {
	case n < 0:
		return s.memSession.Update(ctx, keys, fn)
	case n == 2:
		s.memSession.Update(ctx, keys, fn)
		return 0, errStalled
	default:
		return 0, errStalled
	}
}

var errStalled = errors.New("context deadline exceeded (test)")

func (s *stallingStore) WriteIf(ctx context.Context, expect []StoreRecord, writes []StoreWrite) (bool, []StoreRecord, int64, error) {
	switch n := s.fails.Add(-1); {
	case n < 0:
		return s.memSession.WriteIf(ctx, expect, writes)
	case n == 2:
		s.memSession.WriteIf(ctx, expect, writes)
		return false, nil, 0, errStalled
	default:
		return false, nil, 0, errStalled
	}
}

// TestKVWriteThroughStoreStall: a write whose store call fails at MARS
// (a timeout, etcd away a moment) is sent again by the client, and
// applies once: the caller gets its revision, not ErrUnavailable.
func TestKVWriteThroughStoreStall(t *testing.T) {
	st := &stallingStore{memSession: NewMemoryStore().Session().(*memSession)}
	s := startServer(t, "", storeOpts(st))
	n := readyNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	ctx := ctxT(t)
	r0, err := n.c.Put(ctx, "ctr", []byte("0"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.fails.Store(3) // applied but unanswered, then two failures
	r1, err := n.c.Put(ctx, "ctr", []byte("1"), PutOptions{CAS: true, Rev: r0})
	if err != nil {
		t.Fatalf("a write through a store stall: %v", err)
	}
	if e, err := n.c.Get(ctx, "ctr"); err != nil || e.Rev != r1 || string(e.Value) != "1" {
		t.Fatalf("after the stall: %+v %v, want 1 at revision %d", e, err, r1)
	}
	if _, err := n.c.Put(ctx, "ctr", []byte("2"), PutOptions{CAS: true, Rev: r0}); !IsConflict(err) {
		t.Fatalf("a CAS at the old revision: %v, want a conflict (the stalled write applied once)", err)
	}

	// A store that stays away: the caller's deadline ends the call with
	// the store's failure.
	st.fails.Store(1 << 30)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := n.c.Put(short, "other", []byte("x"), PutOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a write while the store stays away: %v, want ErrUnavailable", err)
	}
	st.fails.Store(0)
}

// TestLeaseReleaseThroughStoreStall: a release whose store call fails at
// MARS (applied but unanswered, then failing) is sent again, returns nil,
// and leaves the key free for another node.
func TestLeaseReleaseThroughStoreStall(t *testing.T) {
	st := &stallingStore{memSession: NewMemoryStore().Session().(*memSession)}
	s := startServer(t, "", storeOpts(st))
	a := readyNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	b := readyNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	ctx := ctxT(t)
	l, err := a.c.Claim(ctx, "room", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st.updateFails.Store(3) // applied but unanswered, then two failures
	if err := l.Release(ctx); err != nil {
		t.Fatalf("a release through a store stall: %v", err)
	}
	l2, err := b.c.Claim(ctx, "room", 30*time.Second)
	if err != nil {
		t.Fatalf("a claim after the release: %v (a 30 s lease: the key must have been freed, not expired)", err)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l.Token())
	}

	// A store that stays away: the caller's deadline ends the release
	// with the store's failure.
	st.updateFails.Store(1 << 30)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := l2.Release(short); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a release while the store stays away: %v, want ErrUnavailable", err)
	}
	st.updateFails.Store(0)
}
