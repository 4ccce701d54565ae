package mars

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const fastInterval = 100 * time.Millisecond

func TestRegistrationAndLookups(t *testing.T) {
	s := startServer(t, "", fastOpts())
	addr := s.Addr().String()
	a := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "HTTP", Role: "HTTP", EndPoint: "pub-a:80",
		Values: map[string]interface{}{"zone": "eu", "cap": 100}})
	b := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "UDP", Role: "UDP", EndPoint: "pub-b:7000"})
	c := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "UDP", Role: "UDP"})
	all := []*testNode{a, b, c}
	for _, n := range all {
		waitFor(t, 2*time.Second, "every node listed", func() bool { return n.c.View().Len() == 3 })
		<-n.c.Ready()
		if !n.c.InTouch() {
			t.Fatal("InTouch false right after a sync")
		}
	}
	v := a.c.View()
	self, ok := v.Node(a.c.Addr())
	if !ok || !self.Self || self.Type != "HTTP" || self.EndPoint != "pub-a:80" || self.Status != StatusOnline {
		t.Fatalf("self entry: %+v", self)
	}
	if got, _ := v.NodeValue(a.c.Addr(), "zone"); got != "eu" {
		t.Fatalf("zone = %#v", got)
	}
	if got, _ := v.NodeValue(a.c.Addr(), "cap"); got != int64(100) {
		t.Fatalf("cap = %#v (%T)", got, got)
	}
	if other, _ := v.Node(b.c.Addr()); other.Self {
		t.Fatal("another node flagged Self")
	}
	udp := v.AddrsByType("UDP")
	want := []string{b.c.Addr(), c.c.Addr()}
	slices.Sort(want)
	if !slices.Equal(udp, want) {
		t.Fatalf("AddrsByType(UDP) = %v, want %v", udp, want)
	}
	if got := v.AddrsByRole("HTTP"); !slices.Equal(got, []string{a.c.Addr()}) {
		t.Fatalf("AddrsByRole(HTTP) = %v", got)
	}
	if got := v.Types(); !slices.Equal(got, []string{"HTTP", "UDP"}) {
		t.Fatalf("Types = %v", got)
	}
	if n, ok := v.NodeByEndPoint("pub-b:7000"); !ok || n.Addr != b.c.Addr() {
		t.Fatalf("NodeByEndPoint = %+v %v", n, ok)
	}
	if got := v.Addrs(a.c.Addr()); len(got) != 2 || slices.Contains(got, a.c.Addr()) {
		t.Fatalf("Addrs(ignore self) = %v", got)
	}
	if len(v.Nodes()) != 3 {
		t.Fatal("Nodes() length")
	}
}

func TestChangesPropagate(t *testing.T) {
	s := startServer(t, "", fastOpts())
	addr := s.Addr().String()
	a := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "HTTP"})
	b := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "UDP"})
	waitFor(t, 2*time.Second, "both listed", func() bool { return b.c.View().Len() == 2 && a.c.View().Len() == 2 })

	if err := a.c.SetType("TCP"); err != nil {
		t.Fatal(err)
	}
	a.c.SetRole("TCP")
	a.c.SetStatus(StatusTaken)
	a.c.SetEndPoint("1.2.3.4:9000")
	a.c.SetValue("rooms", 12)
	a.c.SetValue("tags", []string{"x", "y"})
	if err := a.c.SetSharedData("score", 42); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 2*time.Second, "metadata and shared data on b", func() bool {
		n, ok := b.c.View().Node(a.c.Addr())
		v, vok := b.c.View().SharedData("score")
		return ok && n.Type == "TCP" && n.Role == "TCP" && n.Status == StatusTaken && n.EndPoint == "1.2.3.4:9000" &&
			n.Values["rooms"] == int64(12) && vok && v == 42
	})
	t.Logf("propagated in %v", d)
	if n, _ := b.c.View().Node(a.c.Addr()); fmt.Sprint(n.Values["tags"]) != "[x y]" {
		t.Fatalf("tags = %#v", n.Values["tags"])
	}
	// The writer's own view shows its change once MARS answered.
	waitFor(t, time.Second, "score on a", func() bool { v, ok := a.c.View().SharedData("score"); return ok && v == 42 })

	a.c.SetValue("rooms", nil)
	b.c.RemoveSharedData("score")
	waitFor(t, 2*time.Second, "value and key removed", func() bool {
		n, _ := a.c.View().Node(a.c.Addr())
		_, has := n.Values["rooms"]
		_, kok := a.c.View().SharedData("score")
		return !has && !kok
	})
}

func TestSharedDataCallbacks(t *testing.T) {
	s := startServer(t, "", fastOpts())
	addr := s.Addr().String()
	a := startNode(t, addr, ClientConfig{Interval: fastInterval})
	b := newTestNode(t, addr, ClientConfig{Interval: fastInterval})

	var mu sync.Mutex
	var events []string
	var lookups atomic.Int32
	record := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	b.c.OnInitialSync(func() { record("initial") })
	b.c.OnUpdated(func() { b.c.View().Nodes(); lookups.Add(1) }) // lookups from callbacks must not deadlock
	removeUpd := b.c.OnSharedDataUpdate(func(k string, v int16) {
		if got, ok := b.c.View().SharedData(k); !ok || got != v {
			record("inconsistent")
		}
		record(fmt.Sprintf("set %s=%d", k, v))
	})
	b.c.OnSharedDataRemove(func(k string) { record("del " + k) })
	extra := func(k string, v int16) { record("extra") }
	b.c.OnSharedDataUpdate(extra)
	b.c.RemoveOnSharedDataUpdate(extra)
	b.c.Start()
	<-b.c.Ready()

	a.c.SetSharedData("k1", 1)
	waitFor(t, 2*time.Second, "set event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(events, "set k1=1")
	})
	a.c.RemoveSharedData("k1")
	waitFor(t, 2*time.Second, "remove event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(events, "del k1")
	})
	removeUpd()
	a.c.SetSharedData("k2", 2)
	waitFor(t, 2*time.Second, "k2 on b", func() bool { _, ok := b.c.View().SharedData("k2"); return ok })
	mu.Lock()
	defer mu.Unlock()
	if events[0] != "initial" || slices.Contains(events, "extra") || slices.Contains(events, "inconsistent") ||
		slices.Contains(events, "set k2=2") {
		t.Fatalf("events: %v", events)
	}
	if lookups.Load() == 0 {
		t.Fatal("OnUpdated never ran")
	}
	ran := make(chan struct{})
	b.c.OnInitialSync(func() { close(ran) }) // after the initial sync: queued at once
	<-ran
}

func TestLivenessOfflineThenRemoved(t *testing.T) {
	opts := fastOpts()
	s := startServer(t, "", opts)
	addr := s.Addr().String()
	watcher := startNode(t, addr, ClientConfig{Interval: fastInterval})
	victim := startNode(t, addr, ClientConfig{Interval: fastInterval})
	waitFor(t, 2*time.Second, "victim listed", func() bool { return hasNode(watcher.c.View(), victim.c.Addr(), online) })

	killed := time.Now()
	victim.kill()
	waitFor(t, opts.OfflineAfter+2*fastInterval+200*time.Millisecond, "victim offline", func() bool {
		return hasNode(watcher.c.View(), victim.c.Addr(), offline)
	})
	t.Logf("offline after %v", time.Since(killed))
	waitFor(t, opts.RemoveAfter+2*fastInterval+200*time.Millisecond, "victim removed", func() bool {
		return !hasNode(watcher.c.View(), victim.c.Addr(), nil)
	})
	t.Logf("removed after %v", time.Since(killed))
}

func TestGracefulLeaveIsGoneAtOnce(t *testing.T) {
	opts := fastOpts()
	opts.OfflineAfter, opts.RemoveAfter = 5*time.Second, 10*time.Second
	s := startServer(t, "", opts)
	addr := s.Addr().String()
	watcher := startNode(t, addr, ClientConfig{Interval: fastInterval})
	leaver := startNode(t, addr, ClientConfig{Interval: fastInterval})
	waitFor(t, 2*time.Second, "listed", func() bool { return hasNode(watcher.c.View(), leaver.c.Addr(), online) })
	leaver.close()
	d := waitFor(t, 3*fastInterval, "gone after leave", func() bool {
		return !hasNode(watcher.c.View(), leaver.c.Addr(), nil)
	})
	t.Logf("gone %v after leave", d)
}

func TestRestartWithNewIncarnationReplaces(t *testing.T) {
	opts := fastOpts()
	opts.TrustReportedAddr = true // two transports play one address
	s := startServer(t, "", opts)
	addr := s.Addr().String()
	watcher := startNode(t, addr, ClientConfig{Interval: fastInterval})
	first := newTestNode(t, addr, ClientConfig{Interval: fastInterval, Addr: "10.0.0.1:8000", Incarnation: 1, Type: "old"})
	first.c.Start()
	waitFor(t, 2*time.Second, "old listed", func() bool {
		return hasNode(watcher.c.View(), "10.0.0.1:8000", func(n Node) bool { return n.Type == "old" })
	})
	first.kill()
	second := startNode(t, addr, ClientConfig{Interval: fastInterval, Addr: "10.0.0.1:8000", Incarnation: 2, Type: "new"})
	waitFor(t, 2*time.Second, "new incarnation listed", func() bool {
		return hasNode(watcher.c.View(), "10.0.0.1:8000", func(n Node) bool { return n.Type == "new" && n.Incarnation == 2 })
	})
	if n := watcher.c.View().Len(); n != 2 {
		t.Fatalf("%d nodes listed, want 2", n)
	}
	_ = second
}

func TestNamespacesAreSeparate(t *testing.T) {
	s := startServer(t, "", fastOpts())
	addr := s.Addr().String()
	a1 := startNode(t, addr, ClientConfig{Interval: fastInterval, App: "alpha"})
	a2 := startNode(t, addr, ClientConfig{Interval: fastInterval, App: "alpha"})
	b1 := startNode(t, addr, ClientConfig{Interval: fastInterval, App: "beta"})
	d1 := startNode(t, addr, ClientConfig{Interval: fastInterval})
	a1.c.SetSharedData("only-alpha", 1)
	waitFor(t, 2*time.Second, "alpha sees alpha", func() bool {
		_, ok := a2.c.View().SharedData("only-alpha")
		return a2.c.View().Len() == 2 && ok
	})
	<-b1.c.Ready()
	<-d1.c.Ready()
	time.Sleep(3 * fastInterval) // give a leak a chance to show
	if b1.c.View().Len() != 1 || d1.c.View().Len() != 1 {
		t.Fatalf("beta sees %d nodes, default sees %d", b1.c.View().Len(), d1.c.View().Len())
	}
	if _, ok := b1.c.View().SharedData("only-alpha"); ok {
		t.Fatal("beta sees alpha's shared data")
	}
	// Moving a node to another app.
	if err := b1.c.SetApp("alpha"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "moved node sees alpha", func() bool {
		_, ok := b1.c.View().SharedData("only-alpha")
		return b1.c.View().Len() == 3 && ok
	})
	waitFor(t, 2*time.Second, "alpha lists it", func() bool { return hasNode(a1.c.View(), b1.c.Addr(), online) })
}

func TestGuestIsNeverListed(t *testing.T) {
	s := startServer(t, "", fastOpts())
	addr := s.Addr().String()
	n := startNode(t, addr, ClientConfig{Interval: fastInterval})
	g := startNode(t, addr, ClientConfig{Interval: fastInterval, Guest: true})
	waitFor(t, 2*time.Second, "guest sees the node", func() bool { return hasNode(g.c.View(), n.c.Addr(), online) })
	if err := g.c.SetSharedData("from-guest", 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "guest's shared data", func() bool { v, ok := n.c.View().SharedData("from-guest"); return ok && v == 7 })
	if n.c.View().Len() != 1 || g.c.View().Len() != 1 {
		t.Fatalf("node lists %d, guest lists %d", n.c.View().Len(), g.c.View().Len())
	}
}

func TestClientRefusesBadInputLocally(t *testing.T) {
	s := startServer(t, "", fastOpts())
	n := newTestNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	if err := n.c.SetSharedData(strings.Repeat("k", 55), 1); !errors.Is(err, ErrBadKey) {
		t.Fatalf("55-byte key: %v", err)
	}
	if err := n.c.SetSharedData("", 1); !errors.Is(err, ErrBadKey) {
		t.Fatalf("empty key: %v", err)
	}
	if err := n.c.SetSharedData(strings.Repeat("k", 54), 1); err != nil {
		t.Fatalf("54-byte key: %v", err)
	}
	if err := n.c.SetApp(strings.Repeat("a", 65)); !errors.Is(err, ErrBadApp) {
		t.Fatalf("long app: %v", err)
	}
	if err := n.c.SetApp("bad\x01app"); !errors.Is(err, ErrBadApp) {
		t.Fatalf("control char app: %v", err)
	}
	if err := n.c.SetStatus(9); !errors.Is(err, ErrBadNode) {
		t.Fatalf("status 9: %v", err)
	}
	if err := n.c.SetValue("ch", make(chan int)); !errors.Is(err, ErrBadNode) {
		t.Fatalf("unencodable value: %v", err)
	}
	if err := n.c.SetValue("m", map[int]string{1: "x"}); !errors.Is(err, ErrBadNode) {
		t.Fatalf("non-string map keys: %v", err)
	}
	if err := n.c.SetValue("big", strings.Repeat("x", MaxValuesSize)); !errors.Is(err, ErrBadNode) {
		t.Fatalf("oversized values: %v", err)
	}
	if _, err := NewClient(ClientConfig{Transport: n.tr, MarsAddr: "x:1", App: "\n"}); !errors.Is(err, ErrBadApp) {
		t.Fatalf("NewClient with a bad app: %v", err)
	}
	for _, bad := range []string{"", "no-port", "a:b:c"} {
		if _, err := NewClient(ClientConfig{Transport: n.tr, MarsAddr: bad}); err == nil {
			t.Fatalf("NewClient with MarsAddr %q accepted", bad)
		}
	}
	if _, err := NewClient(ClientConfig{Transport: n.tr, MarsAddr: "x:1", Interval: time.Second, InTouchSpan: time.Second}); err == nil ||
		!strings.Contains(err.Error(), "InTouchSpan") {
		t.Fatalf("NewClient with InTouchSpan = Interval: %v", err)
	}
	n.c.Start()
	waitFor(t, 2*time.Second, "54-byte key accepted", func() bool {
		_, ok := n.c.View().SharedData(strings.Repeat("k", 54))
		return ok
	})
	if err := n.c.LastError(); err != nil {
		t.Fatalf("LastError: %v", err)
	}
}

func TestWaitForLatestNodeData(t *testing.T) {
	s := startServer(t, "", fastOpts())
	n := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	<-n.c.Ready()
	start := time.Now()
	if err := n.c.WaitForLatestNodeData(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*fastInterval {
		t.Fatalf("took %v", d)
	}
	s.Close()
	if err := n.c.WaitForLatestNodeData(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("with MARS down: %v", err)
	}
}

// MARS keeps its default liveness here: with OfflineAfter 300 ms, a stall of
// the loaded test process listed b offline just before MARS stopped.
func TestInTouchTurnsFalseWhenMarsIsDown(t *testing.T) {
	s := startServer(t, "", ServerOptions{})
	a := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	b := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	waitFor(t, 2*time.Second, "in touch", func() bool { return a.c.InTouch() && a.c.View().Len() == 2 })
	s.Close()
	d := waitFor(t, 3*fastInterval+500*time.Millisecond, "out of touch", func() bool { return !a.c.InTouch() })
	t.Logf("out of touch %v after MARS stopped", d)
	if !hasNode(a.c.View(), b.c.Addr(), online) {
		t.Fatal("the view lost its content while MARS is down")
	}
}
