package mars

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// kvOpts are server options for key-value tests: no claim hold.
func kvOpts() ServerOptions {
	o := fastOpts()
	o.LeaseHold = -1
	return o
}

// readyNode starts a node and waits until MARS lists it online.
func readyNode(t testing.TB, marsAddr string, cfg ClientConfig) *testNode {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	n := startNode(t, marsAddr, cfg)
	select {
	case <-n.c.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("node not ready")
	}
	return n
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestKVBasics(t *testing.T) {
	s := startServer(t, "", kvOpts())
	a := readyNode(t, s.Addr().String(), ClientConfig{App: "g"})
	b := readyNode(t, s.Addr().String(), ClientConfig{App: "g"})
	ctx := ctxT(t)

	r1, err := a.c.Put(ctx, "room/1", []byte("one"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.c.Get(ctx, "room/1")
	if err != nil || string(e.Value) != "one" || e.Rev != r1 {
		t.Fatalf("get: %+v %v (put rev %d)", e, err, r1)
	}
	if _, err := b.c.Put(ctx, "room/1", []byte("two"), PutOptions{CAS: true, Rev: r1 - 1}); !IsConflict(err) {
		t.Fatalf("CAS with a stale revision: %v", err)
	}
	var ke *KVError
	if _, err := b.c.Put(ctx, "room/1", []byte("x"), PutOptions{CAS: true}); !errors.As(err, &ke) || ke.Rev != r1 {
		t.Fatalf("create-only on an existing key: %v", err)
	}
	r2, err := b.c.Put(ctx, "room/1", []byte("two"), PutOptions{CAS: true, Rev: r1})
	if err != nil || r2 <= r1 {
		t.Fatalf("CAS: %d %v", r2, err)
	}
	if _, err := a.c.Put(ctx, "room/2", bytes.Repeat([]byte("v"), 64<<10), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Put(ctx, "other", nil, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	list, _, err := b.c.List(ctx, "room/")
	if err != nil || len(list) != 2 || list[0].Key != "room/1" || len(list[1].Value) != 64<<10 {
		t.Fatalf("list: %d entries, %v", len(list), err)
	}
	if _, err := a.c.Delete(ctx, "room/1", DeleteOptions{CAS: true, Rev: r1}); !IsConflict(err) {
		t.Fatalf("delete CAS: %v", err)
	}
	if _, err := a.c.Delete(ctx, "room/1", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.Get(ctx, "room/1"); !IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := a.c.Delete(ctx, "room/1", DeleteOptions{}); !IsNotFound(err) {
		t.Fatalf("delete of an absent key: %v", err)
	}
	// Bad input is refused before anything is sent.
	if _, err := a.c.Put(ctx, "", nil, PutOptions{}); !errors.Is(err, ErrBadKVKey) {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := a.c.Put(ctx, "k", make([]byte, MaxKVValueLen+1), PutOptions{}); !errors.Is(err, ErrLimit) {
		t.Fatalf("large value: %v", err)
	}
	if _, err := a.c.Put(ctx, "a\nb", nil, PutOptions{}); !errors.Is(err, ErrBadKVKey) {
		t.Fatalf("control character: %v", err)
	}
	// Apps do not see each other.
	c := readyNode(t, s.Addr().String(), ClientConfig{App: "h"})
	if _, err := c.c.Get(ctx, "other"); !IsNotFound(err) {
		t.Fatalf("another app's key: %v", err)
	}
}

func TestKVLimits(t *testing.T) {
	o := kvOpts()
	o.MaxKVKeys, o.MaxKVBytes = 3, 100
	s := startServer(t, "", o)
	a := readyNode(t, s.Addr().String(), ClientConfig{})
	ctx := ctxT(t)
	for i := range 3 {
		if _, err := a.c.Put(ctx, fmt.Sprint("k", i), nil, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.c.Put(ctx, "k3", nil, PutOptions{}); !errors.Is(err, ErrLimit) {
		t.Fatalf("key limit: %v", err)
	}
	if _, err := a.c.Put(ctx, "k0", make([]byte, 100), PutOptions{}); !errors.Is(err, ErrLimit) {
		t.Fatalf("byte limit: %v", err)
	}
}

func TestKVTTL(t *testing.T) {
	s := startServer(t, "", kvOpts())
	a := readyNode(t, s.Addr().String(), ClientConfig{})
	ctx := ctxT(t)
	w, err := a.c.Watch(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	waitWatching(t, a.c)
	if _, err := a.c.Put(ctx, "t", []byte("x"), PutOptions{TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if e := <-w; e.Type != KVPut {
		t.Fatalf("first event %+v", e)
	}
	if e := <-w; e.Type != KVExpired || e.Key != "t" {
		t.Fatalf("second event %+v", e)
	}
	if _, err := a.c.Get(ctx, "t"); !IsNotFound(err) {
		t.Fatalf("get after the TTL: %v", err)
	}
}

// waitWatching waits until a watch of c has its starting revision (its
// first poll was answered), so changes after it are delivered.
func waitWatching(t testing.TB, c *Client) {
	t.Helper()
	waitFor(t, 10*time.Second, "the watch to start", func() bool {
		c.kv.mu.Lock()
		defer c.kv.mu.Unlock()
		return c.kv.kvid != 0
	})
	time.Sleep(0) // the first poll's answer reached the watch goroutine below
}

func TestKVWatchOrder(t *testing.T) {
	s := startServer(t, "", kvOpts())
	a := readyNode(t, s.Addr().String(), ClientConfig{})
	b := readyNode(t, s.Addr().String(), ClientConfig{})
	ctx := ctxT(t)
	r0, err := a.c.Put(ctx, "w/start", nil, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.c.WatchFrom(ctx, "w/", r0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	revs := make([]int64, 0, n)
	for i := range n {
		r, err := a.c.Put(ctx, fmt.Sprint("w/", i%7), []byte(fmt.Sprint(i)), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r)
	}
	for i := range n {
		e := <-w
		if e.Type != KVPut || e.Rev != revs[i] || string(e.Value) != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v, want rev %d", i, e, revs[i])
		}
	}
}

func TestLeaseBasics(t *testing.T) {
	s := startServer(t, "", kvOpts())
	a := readyNode(t, s.Addr().String(), ClientConfig{})
	b := readyNode(t, s.Addr().String(), ClientConfig{})
	ctx := ctxT(t)
	// A TTL that a starved test process does not outlive between renewals.
	const ttl = 6 * time.Second
	claimed := time.Now()
	l, err := a.c.Claim(ctx, "room/9", ttl)
	if err != nil {
		t.Fatal(err)
	}
	var ke *KVError
	if _, err := b.c.Claim(ctx, "room/9", 2*time.Second); !IsLeaseHeld(err) || !errors.As(err, &ke) || ke.Holder != a.c.Addr() {
		t.Fatalf("second claim: %v", err)
	}
	if _, err := a.c.Claim(ctx, "room/9", 2*time.Second); !IsLeaseHeld(err) {
		t.Fatalf("claim of a lease this node holds: %v", err)
	}
	// It renews itself past its TTL.
	waitFor(t, 4*ttl, "a renewal past the TTL", func() bool {
		return !l.Valid() || l.Deadline().After(claimed.Add(ttl+ttl/4))
	})
	if !l.Valid() {
		t.Fatalf("lease lost: %v", l.Err())
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	default:
		t.Fatal("Lost not closed after Release")
	}
	l2, err := b.c.Claim(ctx, "room/9", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l.Token())
	}
	// A crashed holder's key is free after the TTL; its Lost fired first.
	b.kill()
	start := time.Now()
	var l3 *Lease
	waitFor(t, 10*time.Second, "the claim after the holder died", func() bool {
		l3, err = a.c.Claim(ctx, "room/9", 2*time.Second)
		return err == nil
	})
	if d := time.Since(start); d < time.Second {
		t.Fatalf("claimed %v after the holder died, before its TTL", d)
	}
	select {
	case <-l2.Lost():
	default:
		t.Fatal("the dead holder's lease was not lost")
	}
	if l3.Token() <= l2.Token() {
		t.Fatalf("token %d after %d", l3.Token(), l2.Token())
	}
	if err := a.c.ReleaseAll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(a.c.Leases()) != 0 {
		t.Fatal("leases left after ReleaseAll")
	}
	g := readyNode(t, s.Addr().String(), ClientConfig{Guest: true})
	if _, err := g.c.Claim(ctx, "x", time.Second); !errors.Is(err, ErrNotLive) {
		t.Fatalf("guest claim: %v", err)
	}
}

func TestKVDataDirRestart(t *testing.T) {
	dir := t.TempDir()
	o := kvOpts()
	o.DataDir = dir
	s := startServer(t, "127.0.0.1:0", o)
	addr := s.Addr().String()
	a := readyNode(t, addr, ClientConfig{})
	ctx := ctxT(t)
	var last int64
	for i := range 50 {
		r, err := a.c.Put(ctx, fmt.Sprint("d/", i%5), []byte(fmt.Sprint(i)), PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	if _, err := a.c.Delete(ctx, "d/4", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := a.c.Claim(ctx, "lease", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w, err := a.c.WatchFrom(ctx, "d/", last)
	if err != nil {
		t.Fatal(err)
	}
	if e := <-w; e.Type != KVDelete || e.Key != "d/4" {
		t.Fatalf("event %+v", e)
	}
	s.Close()
	s2 := startServer(t, addr, o)
	e, err := a.c.Get(ctx, "d/3")
	if err != nil || string(e.Value) != "48" {
		t.Fatalf("after restart: %+v %v", e, err)
	}
	if _, err := a.c.Get(ctx, "d/4"); !IsNotFound(err) {
		t.Fatalf("deleted key after restart: %v", err)
	}
	// The watch goes on from where it was: no resync, no gap.
	r, err := a.c.Put(ctx, "d/0", []byte("after"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e := <-w; e.Type != KVPut || e.Rev != r {
		t.Fatalf("event after restart %+v (rev %d)", e, r)
	}
	// The lease survived; another node cannot take it.
	b := readyNode(t, s2.Addr().String(), ClientConfig{})
	if _, err := b.c.Claim(ctx, "lease", time.Second); !IsLeaseHeld(err) {
		t.Fatalf("claim of a held lease after restart: %v", err)
	}
	if !l.Valid() {
		t.Fatalf("lease lost over the restart: %v", l.Err())
	}
}

// A MARS of the revision before the key-value store (no syncKV flag, and
// KindKV refused as an unknown kind): a node's KV calls fail at once with
// ErrKVUnsupported, and the rest works. A call that reaches it before the
// node knows (the refusal) fails the same way.
func TestKVWithAnEarlierMARS(t *testing.T) {
	s := startServer(t, "", kvOpts())
	s.mu.Lock()
	s.noKV = true
	s.mu.Unlock()
	ctx := ctxT(t)
	raw := newTestNode(t, s.Addr().String(), ClientConfig{Interval: 100 * time.Millisecond})
	raw.c.Start()
	// Before the first sync the client does not know: MARS's refusal says.
	if _, err := raw.c.Put(ctx, "k", nil, PutOptions{}); !errors.Is(err, ErrKVUnsupported) {
		t.Fatalf("put before the first sync: %v", err)
	}
	<-raw.c.Ready()
	start := time.Now()
	if _, err := raw.c.Get(ctx, "k"); !errors.Is(err, ErrKVUnsupported) {
		t.Fatalf("get: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the unsupported get took %v", d)
	}
	if w, err := raw.c.Watch(ctx, ""); err != nil {
		t.Fatal(err)
	} else if _, open := <-w; open {
		t.Fatal("a watch on an earlier MARS delivered an event")
	}
	if raw.c.LastError() != nil {
		t.Fatalf("the refusal of KindKV counts as the node's error: %v", raw.c.LastError())
	}
	other := readyNode(t, s.Addr().String(), ClientConfig{})
	waitFor(t, 5*time.Second, "the nodes to see each other", func() bool {
		return hasNode(raw.c.View(), other.c.Addr(), online) && hasNode(other.c.View(), raw.c.Addr(), online)
	})
}

// A MARS without a data file restarts: the holder's renewals take its
// lease over on the new MARS (same token), and other nodes' claims wait
// for the hold, then find it held.
func TestLeaseSurvivesRestartWithoutData(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", kvOpts())
	addr := s.Addr().String()
	cfg := ClientConfig{Interval: 100 * time.Millisecond, ReregisterJitter: 50 * time.Millisecond}
	a := readyNode(t, addr, cfg)
	b := readyNode(t, addr, cfg)
	ctx := ctxT(t)
	l, err := a.c.Claim(ctx, "k", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	o := kvOpts()
	o.LeaseHold = 2 * time.Second
	startServer(t, addr, o)
	var held error
	waitFor(t, 10*time.Second, "b's claim to find the lease held after the hold", func() bool {
		_, held = b.c.Claim(ctx, "k", time.Second)
		if held != nil && !IsLeaseHeld(held) && !errors.Is(held, ErrUnavailable) && !errors.Is(held, ErrNotLive) {
			t.Fatalf("claim on the new MARS: %v", held)
		}
		return IsLeaseHeld(held)
	})
	var ke *KVError
	if !errors.As(held, &ke) || ke.Holder != a.c.Addr() || ke.Rev != l.Token() {
		t.Fatalf("held by %+v, want %s with token %d", ke, a.c.Addr(), l.Token())
	}
	if !l.Valid() {
		t.Fatalf("the holder lost its lease over the restart: %v", l.Err())
	}
}
