package mars

import (
	"fmt"
	"testing"
	"time"
)

// Issue 13 item 3: a node silent-from-its-MARS for FailoverAfter moves to
// the next address; its view and registration carry over. FailoverAfter is
// 1 s: a loaded machine stalls the test process for several hundred ms,
// and with 300 ms a node left the live first MARS before the kill.
func TestFailoverToNextMars(t *testing.T) {
	s1 := startServer(t, "", fastOpts())
	s2 := startServer(t, "", fastOpts())
	list := fmt.Sprintf("%s, %s", s1.Addr(), s2.Addr())
	cfg := ClientConfig{Interval: fastInterval, FailoverAfter: time.Second}
	a := startNode(t, list, cfg)
	b := startNode(t, list, cfg)
	a.c.SetSharedData("k", 7)
	waitFor(t, 5*time.Second, "both on the first MARS", func() bool {
		return b.c.View().Len() == 2 && sharedIs(b.c.View(), "k", 7) && s2.Stats().Reports == 0
	})

	s1.crash()
	killed := time.Now()
	waitFor(t, 10*time.Second, "both listed by the second MARS", func() bool {
		s2.mu.Lock()
		defer s2.mu.Unlock()
		app := s2.apps[""]
		return app != nil && app.nodes[a.c.Addr()] != nil && app.nodes[b.c.Addr()] != nil
	})
	t.Logf("moved and registered %v after the kill (FailoverAfter %v, interval %v)", time.Since(killed), cfg.FailoverAfter, fastInterval)
	// The view carried over: nothing vanished, and the shared data is back
	// at the new MARS from the nodes' seeds.
	waitFor(t, 5*time.Second, "views whole on the second MARS", func() bool {
		return a.c.InTouch() && b.c.InTouch() && a.c.View().Len() == 2 && sharedIs(a.c.View(), "k", 7) && sharedIs(b.c.View(), "k", 7)
	})
	b.c.SetSharedData("after", 1)
	waitFor(t, 5*time.Second, "changes flow through the second MARS", func() bool { return sharedIs(a.c.View(), "after", 1) })
}

func TestMarsAddrList(t *testing.T) {
	got, err := resolveAll([]string{"127.0.0.1:7000", "localhost:7001", "127.0.0.1:7000"})
	if err != nil || len(got) < 2 || got[0].String() != "127.0.0.1:7000" || got[1].Port() != 7001 {
		t.Fatalf("resolveAll: %v, %v", got, err)
	}
	for _, bad := range []string{"", "a:1,", "a:1,b"} {
		if _, err := splitMarsAddrs(bad); err == nil {
			t.Errorf("MarsAddr %q accepted", bad)
		}
	}
}

// Silence counts from the client loop's point of view: time it stood
// still (the process stopped or short of CPU) does not count, since
// answers may wait unread. TestFailoverToNextMars failed 3 of 12 runs with
// its process stopped 450 ms every 600 ms: nodes left a live MARS.
func TestFailoverIgnoresStalls(t *testing.T) {
	s1 := startServer(t, "", fastOpts())
	s2 := startServer(t, "", fastOpts())
	cfg := ClientConfig{Interval: fastInterval, FailoverAfter: 300 * time.Millisecond}
	n := newTestNode(t, fmt.Sprintf("%s,%s", s1.Addr(), s2.Addr()), cfg) // not started: the test drives the checks
	c := n.c
	if _, ok := c.resolve(time.Now()); !ok {
		t.Fatal("no MARS address")
	}
	c.lastReply.Store(c.clock())
	if c.maybeFailover() {
		t.Fatal("moved right after an answer")
	}
	c.epoch = c.epoch.Add(-time.Second) // the process stood still for 1 s
	if c.maybeFailover() {
		t.Fatal("moved at the first check after a 1 s stall")
	}
	// Checks every Interval/4 from then on: the move comes once the loop
	// has run FailoverAfter (plus jitter) since the answer.
	ran := fastInterval // counted of the stall: one interval
	for !c.maybeFailover() {
		if ran > cfg.FailoverAfter+fastInterval {
			t.Fatalf("no move after the loop ran %v of silence", ran)
		}
		c.epoch = c.epoch.Add(-fastInterval / 4)
		ran += fastInterval / 4
	}
	if ran < cfg.FailoverAfter {
		t.Fatalf("moved after %v of silence the loop saw, want >= %v", ran, cfg.FailoverAfter)
	}
}
