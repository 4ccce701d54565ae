package mars

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests: a real mars-server process, nodes with their own rudp
// transports over loopback, default timings (Interval 1 s, OfflineAfter
// 3 s, RemoveAfter 10 s). They take about 15 s together; -short skips them.

const (
	e2eInterval = time.Second
	// slack absorbs scheduling noise on a loaded 2-core machine: MARS's
	// sweep period (25 ms), the round trip and the race detector.
	slack = 400 * time.Millisecond
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
}

func TestE2ERealServer(t *testing.T) {
	skipShort(t)
	t.Parallel()
	p := startMarsProc(t, freeUDPPort(t))
	start := time.Now()
	a := startNode(t, p.addr, ClientConfig{Type: "HTTP", Role: "HTTP"})
	b := startNode(t, p.addr, ClientConfig{Type: "UDP", Role: "UDP", EndPoint: "b.example:7000"})
	c := startNode(t, p.addr, ClientConfig{Type: "UDP", Role: "UDP"})
	child := startChildNode(t, p.addr, "")
	other := startNode(t, p.addr, ClientConfig{App: "other-app"})
	nodes := []*testNode{a, b, c}
	for _, n := range nodes {
		waitFor(t, 2*time.Second-time.Since(start)+slack, "registration visible to all", func() bool {
			return n.c.View().Len() == 4 && hasNode(n.c.View(), child.addr, online)
		})
	}
	t.Logf("all registered and visible after %v", time.Since(start))

	changed := time.Now()
	a.c.SetType("TCP")
	a.c.SetValue("load", 0.5)
	a.c.SetSharedData("matches", 3)
	for _, n := range nodes[1:] {
		waitFor(t, 2*time.Second-time.Since(changed)+slack, "change visible to all", func() bool {
			m, ok := n.c.View().Node(a.c.Addr())
			v, vok := n.c.View().SharedData("matches")
			return ok && m.Type == "TCP" && m.Values["load"] == 0.5 && vok && v == 3
		})
	}
	t.Logf("metadata and shared data propagated in %v", time.Since(changed))

	// Namespaces do not see each other.
	if other.c.View().Len() != 1 || hasNode(a.c.View(), other.c.Addr(), nil) {
		t.Fatalf("namespace leak: other app lists %d nodes", other.c.View().Len())
	}
	if _, ok := other.c.View().SharedData("matches"); ok {
		t.Fatal("namespace leak: shared data crossed apps")
	}

	killed := time.Now()
	child.kill()
	waitFor(t, 3*time.Second+e2eInterval+slack, "killed node offline", func() bool {
		return hasNode(a.c.View(), child.addr, offline)
	})
	t.Logf("killed node offline after %v (bound 3 s + 1 interval)", time.Since(killed))
	waitFor(t, 10*time.Second+e2eInterval+slack-time.Since(killed), "killed node removed", func() bool {
		return !hasNode(a.c.View(), child.addr, nil) && !hasNode(b.c.View(), child.addr, nil)
	})
	t.Logf("killed node removed after %v (bound 10 s + 1 interval)", time.Since(killed))
}

func TestE2EMarsKilledAndRestarted(t *testing.T) {
	skipShort(t)
	t.Parallel()
	port := freeUDPPort(t)
	p := startMarsProc(t, port)
	a := startNode(t, p.addr, ClientConfig{Type: "HTTP"})
	b := newTestNodeWith(t, p.addr, ClientConfig{Type: "UDP"}, false) // recovers without peer-down events
	b.c.Start()
	c := startNode(t, p.addr, ClientConfig{Type: "UDP", Guest: true})
	want := map[string]int16{}
	for i := range 20 {
		k := fmt.Sprintf("a-key-%d", i)
		a.c.SetSharedData(k, int16(i))
		want[k] = int16(i)
	}
	for i := range 10 {
		k := fmt.Sprintf("b-key-%d", i)
		b.c.SetSharedData(k, int16(-i))
		want[k] = int16(-i)
	}
	complete := func(v *View, nodes ...*testNode) bool {
		for _, n := range nodes {
			if !hasNode(v, n.c.Addr(), online) {
				return false
			}
		}
		data := v.AllSharedData()
		for k, x := range want {
			if data[k] != x {
				return false
			}
		}
		return true
	}
	for _, n := range []*testNode{a, b, c} {
		waitFor(t, 3*time.Second, "cluster settled", func() bool { return complete(n.c.View(), a, b) })
	}

	if code := p.signal(syscall.SIGKILL); code != -1 {
		t.Logf("mars-server exit code %d", code)
	}
	// A change made while MARS is down must not be lost.
	a.c.SetSharedData("during-outage", 99)
	want["during-outage"] = 99
	p2 := startMarsProc(t, port)
	restarted := time.Now()
	fresh := startNode(t, p2.addr, ClientConfig{Type: "fresh"})
	var seenA, seenB, seenData time.Duration
	waitFor(t, 3*time.Second, "every node and all shared data back at MARS", func() bool {
		v := fresh.c.View()
		if seenA == 0 && hasNode(v, a.c.Addr(), online) {
			seenA = time.Since(restarted)
		}
		if seenB == 0 && hasNode(v, b.c.Addr(), online) {
			seenB = time.Since(restarted)
		}
		if seenData == 0 && len(v.AllSharedData()) == len(want) {
			seenData = time.Since(restarted)
		}
		return complete(fresh.c.View(), a, b)
	})
	t.Logf("fresh node sees the whole cluster %v after the restart (a %v, b %v, data %v)", time.Since(restarted), seenA, seenB, seenData)
	for _, n := range []*testNode{a, b, c} {
		waitFor(t, 3*time.Second-time.Since(restarted)+slack, "old nodes in touch and complete", func() bool {
			return n.c.InTouch() && complete(n.c.View(), a, b, fresh)
		})
	}
	if hasNode(fresh.c.View(), c.c.Addr(), nil) {
		t.Fatal("the guest is listed after the restart")
	}
	if code := p2.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("mars-server exited %d on SIGTERM", code)
	}
}
