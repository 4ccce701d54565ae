package etcdstore

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/etcdtest"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// kvNode is a node with a MARS client over its own rudp transport.
func kvNode(t *testing.T, marsAddr string) *mars.Client {
	t.Helper()
	var cl atomic.Pointer[mars.Client]
	tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{Logger: quiet(), CloseTimeout: 100 * time.Millisecond,
		OnMessage: func(from netip.AddrPort, kind byte, p []byte, reliable bool) {
			if c := cl.Load(); c != nil && mars.IsMarsKind(kind) {
				c.HandleMessage(from, kind, p, reliable)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := mars.NewClient(mars.ClientConfig{Transport: tr, MarsAddr: marsAddr, Interval: 200 * time.Millisecond,
		FailoverAfter: 600 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cl.Store(c)
	c.Start()
	t.Cleanup(func() { c.Close(); tr.Close() })
	select {
	case <-c.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("node not ready")
	}
	return c
}

// The key-value store on replicas over a real etcd: writes through one
// replica are read on the other, TTL keys and leases expire by etcd's
// clock, and the store leases behave.
func TestKVOnEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	st1 := newStore(t, e.Endpoint, "/kv/")
	st2 := newStore(t, e.Endpoint, "/kv/")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	id, err := st1.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.KeepAlive(ctx, id); err != nil {
		t.Fatalf("keep-alive from another client: %v", err)
	}
	if err := st1.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := st2.KeepAlive(ctx, id); !errors.Is(err, mars.ErrStoreLeaseGone) {
		t.Fatalf("keep-alive of a revoked lease: %v", err)
	}

	opts := func(st mars.Store) mars.ServerOptions {
		// Limits a starved test process does not outlive by accident (a node
		// listed offline may not claim).
		return mars.ServerOptions{Store: st, Logger: quiet(), OfflineAfter: 5 * time.Second, RemoveAfter: 15 * time.Second}
	}
	s1, err := mars.Listen("127.0.0.1:0", opts(st1))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := mars.Listen("127.0.0.1:0", opts(st2))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	a := kvNode(t, s1.Addr().String())
	b := kvNode(t, s2.Addr().String())

	r, err := a.Put(ctx, "room/1", []byte("x"), mars.PutOptions{CAS: true})
	if err != nil {
		t.Fatal(err)
	}
	if g, err := a.Get(ctx, "room/1"); err != nil || g.Rev != r {
		t.Fatalf("own read: %+v %v", g, err)
	}
	if _, err := b.Put(ctx, "room/1", []byte("y"), mars.PutOptions{CAS: true}); !mars.IsConflict(err) {
		t.Fatalf("create-only put of an existing key: %v", err)
	}
	w, err := b.WatchFrom(ctx, "room/", r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, "room/2", []byte("t"), mars.PutOptions{TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if ev := <-w; ev.Type != mars.KVPut || ev.Key != "room/2" {
		t.Fatalf("event %+v", ev)
	}
	if ev := <-w; ev.Type != mars.KVDelete || ev.Key != "room/2" {
		t.Fatalf("event after the TTL %+v", ev)
	}

	const ttl = 6 * time.Second
	claimed := time.Now()
	l, err := a.Claim(ctx, "owner", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "owner", ttl); !mars.IsLeaseHeld(err) {
		t.Fatalf("second claim: %v", err)
	}
	for deadline := time.Now().Add(4 * ttl); l.Valid() && !l.Deadline().After(claimed.Add(ttl+ttl/4)); {
		if time.Now().After(deadline) {
			t.Fatal("no renewal confirmed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !l.Valid() {
		t.Fatalf("renewals failed: %v", l.Err())
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := b.Claim(ctx, "owner", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l.Token())
	}
}
