package mars

import (
	"testing"
	"time"
)

// Issue 10 finding 3: MARS kinds are accepted only as reliable messages on
// an established session, and a node takes them only from its MARS.

func TestHostileUnreliableReportChangesNothing(t *testing.T) {
	s := startServer(t, "", fastOpts())
	watcher := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	<-watcher.c.Ready()

	raw := newRawPeer(t)
	addr := raw.tr.LocalAddr().String() // even its own address: unreliable is never enough
	r := report{Addr: addr, Inc: 1, Seq: 1, Info: &nodeInfo{Type: "forged", Status: StatusOnline},
		Ops: []op{{Seq: 1, Key: "forged-key", Val: 1}}}
	if err := raw.tr.USend(s.Addr(), KindReport, r.append(nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the datagram ignored or taken", func() bool {
		return s.Stats().Ignored >= 1 || hasNode(watcher.c.View(), addr, nil)
	})
	settled(t, watcher)
	if hasNode(watcher.c.View(), addr, nil) {
		t.Error("an unreliable report registered a node")
	}
	if _, ok := watcher.c.View().SharedData("forged-key"); ok {
		t.Error("an unreliable report set a shared key")
	}
	raw.mu.Lock()
	answers := len(raw.errs) + raw.sync
	raw.mu.Unlock()
	if answers != 0 {
		t.Errorf("MARS answered a forged datagram %d times", answers)
	}
}

func TestHostileUnreliableSyncAtNodeChangesNothing(t *testing.T) {
	s := startServer(t, "", fastOpts())
	forger := newRawPeer(t)
	n := spoofedNode(t, s.Addr(), forger.tr.LocalAddr(), ClientConfig{Interval: fastInterval})
	<-n.c.Ready()
	before := n.c.Dropped()

	// The forged sync arrives as an unreliable datagram that appears to come
	// from MARS's address, with MARS's real incarnation (it is published in
	// every sync).
	msg := forgedSync(n.c.Addr(), s.Incarnation())
	for range 3 {
		if err := forger.tr.USend(n.tr.LocalAddr(), KindSync, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the forged syncs dropped or taken", func() bool {
		return n.c.Dropped() >= before+3 || hasNode(n.c.View(), "10.9.9.9:7000", nil)
	})
	settled(t, n)
	if hasNode(n.c.View(), "10.9.9.9:7000", nil) {
		t.Error("a forged unreliable sync listed a node")
	}
	if _, ok := n.c.View().SharedData("intruder"); ok {
		t.Error("a forged unreliable sync set a shared key")
	}
	if !hasNode(n.c.View(), n.c.Addr(), nil) {
		t.Error("the node lost its own listing")
	}
}
