package mars

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// storeOpts are fastOpts for a replica over st.
func storeOpts(st Store) ServerOptions {
	o := fastOpts()
	o.Store = st
	return o
}

// ownerOf returns the replica that serves a node, per s's copy (0: none).
func ownerOf(s *Server, app, addr string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[app]; a != nil {
		if e := a.nodes[addr]; e != nil {
			return e.owner
		}
	}
	return 0
}

// Two replicas over one MemoryStore: a node on either sees the other, adds
// from both sum exactly, and a node whose replica dies moves to the other
// without re-registering and without ever being listed offline.
func TestReplicasShareState(t *testing.T) {
	ms := NewMemoryStore()
	st1, st2 := ms.Session(), ms.Session()
	defer st2.Close()
	s1 := startServer(t, "", storeOpts(st1))
	s2 := startServer(t, "", storeOpts(st2))
	if s1.Incarnation() != s2.Incarnation() {
		t.Fatal("replicas over one store report different incarnations")
	}
	cfg := ClientConfig{Interval: fastInterval, FailoverAfter: 300 * time.Millisecond}
	a := startNode(t, fmt.Sprintf("%s,%s", s1.Addr(), s2.Addr()), cfg)
	b := startNode(t, fmt.Sprintf("%s,%s", s2.Addr(), s1.Addr()), cfg)
	waitFor(t, 10*time.Second, "both nodes listed on both", func() bool {
		return a.c.View().Len() == 2 && b.c.View().Len() == 2
	})
	if ownerOf(s2, "", a.c.Addr()) != s1.st.owner || ownerOf(s1, "", b.c.Addr()) != s2.st.owner {
		t.Fatal("each node is not served by its first replica")
	}

	const adds = 300
	var wg sync.WaitGroup
	for _, n := range []*testNode{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < adds; i++ {
				if err := n.c.AddSharedData("count", 1); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					time.Sleep(time.Duration(i%7) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "adds from both replicas sum", func() bool {
		return sharedIs(a.c.View(), "count", 2*adds) && sharedIs(b.c.View(), "count", 2*adds)
	})

	// b watches a's listing through the failover: never offline, never gone.
	watched := keepsOnline(b.c.View(), a.c.Addr())
	_, verBefore := a.c.View().Version()
	s1.crash() // its session stays: the store sees a replica that stopped answering
	killed := time.Now()
	waitFor(t, 10*time.Second, "a served by the second replica", func() bool {
		return ownerOf(s2, "", a.c.Addr()) == s2.st.owner && a.c.InTouch()
	})
	t.Logf("a moved %v after the kill", time.Since(killed))
	for i := 0; i < 50; i++ {
		a.c.AddSharedData("count", 1)
	}
	waitFor(t, 10*time.Second, "adds after the failover", func() bool {
		return sharedIs(b.c.View(), "count", 2*adds+50) && sharedIs(a.c.View(), "count", 2*adds+50)
	})
	if m := watched(); m != "" {
		t.Fatal("a:", m)
	}
	if inc, ver := a.c.View().Version(); inc != s2.Incarnation() || ver < verBefore {
		t.Fatalf("view at %x/%d after the move, was %d", inc, ver, verBefore)
	}
	a.c.mu.Lock()
	reseeded := a.c.reseed || a.c.graceOn
	a.c.mu.Unlock()
	if reseeded {
		t.Fatal("the node treated the move as a MARS restart")
	}

	// A replica's session ends (its lease expired): nodes still served by
	// it are gone; a node that moved is not.
	st1.Close()
	time.Sleep(50 * time.Millisecond)
	if ownerOf(s2, "", a.c.Addr()) != s2.st.owner {
		t.Fatal("a moved node expired with its old replica's session")
	}
}

// A node silent on every replica is listed offline, then removed, by the
// replica that served it; a graceful leave is gone at once. RemoveAfter
// is 3 s: with 900 ms the killed node was offline for only 300 ms, and a
// stall of the loaded test process hid that state from the observer.
func TestReplicaLiveness(t *testing.T) {
	ms := NewMemoryStore()
	st1, st2 := ms.Session(), ms.Session()
	defer st1.Close()
	defer st2.Close()
	opts1, opts2 := storeOpts(st1), storeOpts(st2)
	opts1.RemoveAfter, opts2.RemoveAfter = 3*time.Second, 3*time.Second
	s1 := startServer(t, "", opts1)
	s2 := startServer(t, "", opts2)
	cfg := ClientConfig{Interval: fastInterval}
	a := startNode(t, s1.Addr().String(), cfg)
	b := startNode(t, s2.Addr().String(), cfg)
	c := startNode(t, s2.Addr().String(), cfg)
	waitFor(t, 10*time.Second, "all listed", func() bool { return b.c.View().Len() == 3 })
	a.kill()
	waitFor(t, 10*time.Second, "killed node offline", func() bool { return hasNode(b.c.View(), a.c.Addr(), offline) })
	waitFor(t, 10*time.Second, "killed node removed", func() bool { return !hasNode(b.c.View(), a.c.Addr(), nil) })
	c.close()
	waitFor(t, 10*time.Second, "left node gone", func() bool { return !hasNode(b.c.View(), c.c.Addr(), nil) })
}

// storeWriteSetup starts a store-mode server over a memory store with the
// node 127.0.0.1:9 (incarnation 7) registered at Seq 5, for the tests of
// storeWrite's exactly-once adds.
func storeWriteSetup(t *testing.T) (s *Server, st Store, addr string, info *nodeInfo) {
	t.Helper()
	st = NewMemoryStore().Session()
	t.Cleanup(func() { st.Close() })
	s = startServer(t, "", storeOpts(st))
	addr = "127.0.0.1:9"
	info = &nodeInfo{Type: "t", Status: StatusOnline}
	if _, _, _, _, err := s.storeWrite(&report{Addr: addr, Inc: 7, Info: info, Seq: 5}, StoreNode, 0, nil); err != nil {
		t.Fatal(err)
	}
	return s, st, addr, info
}

// adds is the changes from+1..to, each adding 1 to the shared key "n".
func adds(from, to uint64) []op {
	var ops []op
	for q := from + 1; q <= to; q++ {
		ops = append(ops, op{Seq: q, Key: "n", Val: 1, Add: true})
	}
	return ops
}

// storedValue is the stored value of shared key name ("none": absent).
func storedValue(t *testing.T, st Store, name string) string {
	t.Helper()
	recs, _, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Kind == StoreShared && r.Name == name {
			return string(r.Value)
		}
	}
	return "none"
}

// spreadAdds is the changes from+1..to, each adding 1 to one of the
// shared keys "n0".."n<keys-1>" in turn.
func spreadAdds(from, to uint64, keys int) []op {
	var ops []op
	for q := from + 1; q <= to; q++ {
		ops = append(ops, op{Seq: q, Key: fmt.Sprint("n", int(q)%keys), Val: 1, Add: true})
	}
	return ops
}

// storedSum is the sum of the stored shared values ("none": no key).
func storedSum(t *testing.T, st Store) string {
	t.Helper()
	recs, _, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sum, any := 0, false
	for _, r := range recs {
		if r.Kind == StoreShared {
			v, _ := DecodeStoredValue(r.Value)
			sum, any = sum+int(v), true
		}
	}
	if !any {
		return "none"
	}
	return fmt.Sprint(sum)
}

// A report whose changes start after a gap (From > the record's Ack) applies
// none of them, also when it is written in several transactions (more than
// storeChunk keys); the resend from Ack applies each exactly once.
func TestStoreWriteGap(t *testing.T) {
	s, st, addr, _ := storeWriteSetup(t)
	value := func() string { return storedSum(t, st) }
	_, ack, _, _, err := s.storeWrite(&report{Addr: addr, Inc: 7, From: 20, Seq: 270, Ops: spreadAdds(20, 270, 150)}, StoreNode, 0, nil)
	if err != nil || ack != 5 || value() != "none" {
		t.Fatalf("after a gap: ack %d, value %s, %v; want ack 5 and nothing applied", ack, value(), err)
	}
	_, ack, _, _, err = s.storeWrite(&report{Addr: addr, Inc: 7, From: 5, Seq: 270, Ops: spreadAdds(5, 270, 150)}, StoreNode, 0, nil)
	if err != nil || ack != 270 || value() != "265" {
		t.Fatalf("resent from the ack: ack %d, value %s, %v; want 270 and 265", ack, value(), err)
	}
	_, ack, _, _, err = s.storeWrite(&report{Addr: addr, Inc: 7, From: 5, Seq: 270, Ops: spreadAdds(5, 270, 150)}, StoreNode, 0, nil)
	if err != nil || ack != 270 || value() != "265" {
		t.Fatalf("resent again: ack %d, value %s, %v; want 270 and 265 (no double apply)", ack, value(), err)
	}
}

// A node's applied adds whose acknowledgement it never received are not
// applied again when its record vanished meanwhile (removed by the sweep,
// or expired with a dead replica's session before a takeover) and it
// registers again with its pending changes from 0.
func TestStoreAckSurvivesRecordLoss(t *testing.T) {
	s, st, addr, info := storeWriteSetup(t)
	value := func() string { return storedValue(t, st, "n") }
	// Applied; the reply is lost.
	if _, ack, _, _, err := s.storeWrite(&report{Addr: addr, Inc: 7, From: 5, Seq: 10, Ops: adds(5, 10)}, StoreNode, 0, nil); err != nil || ack != 10 {
		t.Fatalf("ack %d, %v", ack, err)
	}
	applied := value()
	// The record vanishes.
	nodeKey := StoreKey{Kind: StoreNode, Name: addr}
	if _, err := st.Update(context.Background(), []StoreKey{nodeKey}, func([]StoreRecord) ([]StoreWrite, error) {
		return []StoreWrite{{StoreKey: nodeKey, Delete: true}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// The node registers again with every pending change.
	if _, _, _, _, err := s.storeWrite(&report{Addr: addr, Inc: 7, Info: info, From: 0, Seq: 10, Ops: adds(5, 10)}, StoreNode, 0, nil); err != nil {
		t.Fatal(err)
	}
	if got := value(); got != applied {
		t.Fatalf("after the record was lost and the node registered again: %s, want %s (applied twice)", got, applied)
	}
	// A new incarnation at the address starts from its own changes.
	if _, _, _, _, err := s.storeWrite(&report{Addr: addr, Inc: 8, Info: info, From: 0, Seq: 3, Ops: adds(0, 3)}, StoreNode, 0, nil); err != nil {
		t.Fatal(err)
	}
	if got := value(); got != "8" {
		t.Fatalf("a new incarnation's 3 adds: %s, want 8", got)
	}
}
