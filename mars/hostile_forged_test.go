package mars

import (
	"testing"
	"time"
)

// Issue 10 finding 7 (MARS side): a node speaks only for its own address.
// A report or leave for another node's address, even over a reliable
// session and with the victim's published incarnation, changes nothing.

func TestHostileForgedReportForAnotherAddressChangesNothing(t *testing.T) {
	s := startServer(t, "", fastOpts())
	victim := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval, Type: "victim"})
	watcher := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	waitFor(t, 5*time.Second, "victim listed", func() bool { return hasNode(watcher.c.View(), victim.c.Addr(), online) })

	raw := newRawPeer(t)
	// A new incarnation would replace the victim's listing on an unchecked MARS.
	r := report{Addr: victim.c.Addr(), Inc: victim.c.Incarnation() + 1, Seq: 1,
		Info: &nodeInfo{Type: "impostor", Status: StatusTaken}, Ops: []op{{Seq: 1, Key: "impostor-key", Val: 9}}}
	if err := raw.tr.Send(s.Addr(), KindReport, r.append(nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the impostor refused or taken", func() bool {
		return raw.errCount() >= 1 || !hasNode(watcher.c.View(), victim.c.Addr(), func(n Node) bool { return n.Type == "victim" })
	})
	if raw.errCount() == 0 || raw.lastErr().Code != CodeBadNode {
		t.Error("the impostor was not refused with CodeBadNode")
	}
	settled(t, watcher)
	n, ok := watcher.c.View().Node(victim.c.Addr())
	if !ok || n.Type != "victim" || n.Incarnation != victim.c.Incarnation() || n.Status != StatusOnline {
		t.Errorf("victim listed as %+v (listed %v) after a forged report", n, ok)
	}
	if _, ok := watcher.c.View().SharedData("impostor-key"); ok {
		t.Error("a forged report set a shared key")
	}
}

func TestHostileForgedLeaveChangesNothing(t *testing.T) {
	s := startServer(t, "", fastOpts())
	victim := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	guest := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval, Guest: true})
	watcher := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	waitFor(t, 5*time.Second, "victim listed", func() bool { return hasNode(watcher.c.View(), victim.c.Addr(), online) })
	<-guest.c.Ready()

	raw := newRawPeer(t)
	for _, who := range []*testNode{victim, guest} {
		l := leave{Addr: who.c.Addr(), Inc: who.c.Incarnation()} // incarnations are published
		if err := raw.tr.Send(s.Addr(), KindLeave, l.append(nil)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the forged leaves refused or taken", func() bool {
		return raw.errCount() >= 2 || !hasNode(watcher.c.View(), victim.c.Addr(), online)
	})
	settled(t, watcher)
	if !hasNode(watcher.c.View(), victim.c.Addr(), online) {
		t.Error("a forged leave listed the victim offline")
	}
	s.mu.Lock()
	_, guestKept := s.apps[""].guests[guest.c.Addr()]
	s.mu.Unlock()
	if !guestKept {
		t.Error("a forged leave removed a guest")
	}
	// The node's own leave still works.
	victim.close()
	waitFor(t, 5*time.Second, "gone after its own leave", func() bool { return !hasNode(watcher.c.View(), victim.c.Addr(), nil) })
}
