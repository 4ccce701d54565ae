package mesh

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// Behaviour of nodes in a running cluster: listing, namespaces, callbacks,
// shutdown, StartAsMARS.

// TestGuestNeverListed: a guest (New with AsGuest, or Guest) syncs the
// cluster and sends and receives, but no node lists it, itself included.
func TestGuestNeverListed(t *testing.T) {
	requireNoDefault(t)
	c := newCluster(t, 2)
	a := c.nodes[0]
	guest := c.add(AsGuest())
	if !guest.IsGuest() || a.IsGuest() {
		t.Fatal("IsGuest")
	}
	a.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	guest.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return append(d, '!'), nil })
	eventually(t, 3*time.Second, func() bool { return len(guest.GetNodeAddresses(nil)) == 2 }, "the guest lists the two nodes")
	if resp, err := guest.SendRPC(1, a.GetMyEndPoint(), []byte("g")); err != nil || string(resp) != "g" {
		t.Fatalf("guest -> node: %q %v", resp, err)
	}
	if resp, err := a.SendRPC(1, guest.GetMyEndPoint(), []byte("n")); err != nil || string(resp) != "n!" {
		t.Fatalf("node -> guest: %q %v", resp, err)
	}

	// The package-level Guest.
	useMarsEnv(t, c.cfg.MarsPort)
	if err := Guest(""); err != nil {
		t.Fatal(err)
	}
	defer Shutdown()
	WaitForLatestNodeData()
	for _, n := range c.nodes {
		n.WaitForLatestNodeData()
	}
	pkgGuest := GetMyEndPoint()
	for _, n := range c.nodes {
		for _, g := range []string{guest.GetMyEndPoint(), pkgGuest} {
			if n.GetNode(g) != nil || slices.Contains(n.GetNodeAddresses(nil), g) || slices.Contains(n.GetNodeAddressesByType("node"), g) {
				t.Errorf("%s lists the guest %s", n.GetMyEndPoint(), g)
			}
		}
	}
	if got := GetNodeAddresses(nil); len(got) != 2 || slices.Contains(got, pkgGuest) {
		t.Errorf("the package-level guest lists %v", got)
	}
	for range 20 {
		if r := a.GetRandomNodeAddressByType("node"); r == guest.GetMyEndPoint() || r == pkgGuest {
			t.Fatal("a guest was offered as a random node")
		}
	}
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// TestAppNamespaces: nodes of different app names do not see each other's
// nodes or shared data; SetAppName moves a running node.
func TestAppNamespaces(t *testing.T) {
	c := newCluster(t, 0)
	a1, a2 := c.add(WithApp("alpha")), c.add(WithApp("alpha"))
	b1 := c.add(WithApp("beta"))
	d := c.add()
	lists := func(n *Node, want ...*Node) bool {
		got := n.GetNodeAddresses(nil)
		if len(got) != len(want) {
			return false
		}
		for _, w := range want {
			if !slices.Contains(got, w.GetMyEndPoint()) {
				return false
			}
		}
		return true
	}
	eventually(t, 3*time.Second, func() bool {
		return lists(a1, a1, a2) && lists(a2, a1, a2) && lists(b1, b1) && lists(d, d)
	}, "each app lists only its own nodes")
	a1.SetSharedData("ns-key", 9)
	eventually(t, 3*time.Second, func() bool { v, ok := a2.GetSharedData("ns-key"); return ok && v == 9 }, "shared data reaches the same app")
	b1.WaitForLatestNodeData()
	d.WaitForLatestNodeData()
	for _, n := range []*Node{b1, d} {
		if _, ok := n.GetSharedData("ns-key"); ok {
			t.Fatal("shared data crossed app names")
		}
		if n.GetNode(a1.GetMyEndPoint()) != nil {
			t.Fatal("a node of another app is visible")
		}
	}

	b1.SetAppName("alpha")
	eventually(t, 3*time.Second, func() bool { return lists(a1, a1, a2, b1) && lists(b1, a1, a2, b1) }, "SetAppName moves the node to alpha")
	if v, ok := b1.GetSharedData("ns-key"); !ok || v != 9 {
		t.Fatal("the moved node does not see its new app's shared data")
	}
}

// TestSyncCallbacks: OnInitialSync and OnReady fire once, after the first
// sync (not before MARS answers), or at once when registered later;
// OnUpdate and OnUpdated fire around every sync; WaitForLatestNodeData
// returns whether or not MARS answers.
func TestSyncCallbacks(t *testing.T) {
	port := freeUDPPort(t) // MARS will listen here, but not yet
	cfg := testConfig(port)
	interval := 200 * time.Millisecond
	n, err := New(cfg, WithLogger(quiet), WithSyncInterval(interval))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	var initial, ready atomic.Int32
	var mu sync.Mutex
	var events []string
	record := func(e string) func() {
		return func() {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
	}
	n.OnInitialSync(func() {
		initial.Add(1)
		if !n.IsPartOfCluster() {
			t.Error("OnInitialSync ran before the node was part of the cluster")
		}
	})
	n.OnReady(func() { ready.Add(1) })
	n.OnUpdate(record("update"))
	n.OnUpdated(record("updated"))

	start := time.Now()
	n.WaitForLatestNodeData() // MARS is not there: gives up after 3 intervals
	if el := time.Since(start); el > 3*interval+time.Second {
		t.Fatalf("WaitForLatestNodeData without MARS returned after %v", el)
	}
	if initial.Load() != 0 || ready.Load() != 0 || n.IsPartOfCluster() {
		t.Fatal("callbacks fired (or the node is part of the cluster) without MARS")
	}

	srv, err := mars.Listen(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), mars.ServerOptions{Logger: quiet})
	if err != nil {
		t.Skipf("MARS port %d taken meanwhile: %v", port, err)
	}
	defer srv.Close()
	select {
	case <-n.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no first sync once MARS is up")
	}
	eventually(t, time.Second, func() bool { return initial.Load() == 1 && ready.Load() == 1 }, "OnInitialSync and OnReady fire after the first sync")

	start = time.Now()
	n.WaitForLatestNodeData() // two more syncs
	if el := time.Since(start); el > 3*interval+time.Second {
		t.Fatalf("WaitForLatestNodeData returned after %v", el)
	}
	// Registered after the first sync: queued at once (they run on the
	// node's dispatcher, as every callback does).
	var late atomic.Int32
	n.OnReady(func() { late.Add(1) })
	n.OnInitialSync(func() { late.Add(1) })
	eventually(t, 3*time.Second, func() bool { return late.Load() == 2 }, "OnReady/OnInitialSync after the first sync run")
	if initial.Load() != 1 || ready.Load() != 1 {
		t.Fatalf("OnInitialSync fired %d times, OnReady %d", initial.Load(), ready.Load())
	}
	eventually(t, 3*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) >= 6
	}, "OnUpdate and OnUpdated fire on every sync")
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(events); i++ {
		if events[i] == events[i-1] {
			t.Fatalf("OnUpdate and OnUpdated do not alternate: %v", events)
		}
	}
}

// TestRemoveOnSharedDataCallbacks: a removed callback stops firing while
// others keep firing.
func TestRemoveOnSharedDataCallbacks(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	var removedUpdates, removedRemoves atomic.Int32
	var mu sync.Mutex
	var seen []string
	removedUpdate := func(k string, v int16) {
		if k == "rk" {
			removedUpdates.Add(1)
		}
	}
	removedRemove := func(k string) {
		if k == "rk" {
			removedRemoves.Add(1)
		}
	}
	b.OnSharedDataUpdate(removedUpdate)
	b.OnSharedDataRemove(removedRemove)
	b.OnSharedDataUpdate(func(k string, v int16) {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("set %s=%d", k, v))
		mu.Unlock()
	})
	b.OnSharedDataRemove(func(k string) {
		mu.Lock()
		seen = append(seen, "remove "+k)
		mu.Unlock()
	})
	witnessed := func(e string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(seen, e)
		}
	}
	a.SetSharedData("rk", 1)
	eventually(t, 3*time.Second, witnessed("set rk=1"), "the update reaches b")
	a.RemoveSharedData("rk")
	eventually(t, 3*time.Second, witnessed("remove rk"), "the removal reaches b")
	if removedUpdates.Load() != 1 || removedRemoves.Load() != 1 {
		t.Fatalf("callbacks before removal fired %d/%d times", removedUpdates.Load(), removedRemoves.Load())
	}
	b.RemoveOnSharedDataUpdate(removedUpdate)
	b.RemoveOnSharedDataRemove(removedRemove)
	a.SetSharedData("rk", 2)
	eventually(t, 3*time.Second, witnessed("set rk=2"), "the second update reaches b")
	a.RemoveSharedData("rk")
	eventually(t, 3*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 4
	}, "the second removal reaches b")
	if removedUpdates.Load() != 1 || removedRemoves.Load() != 1 {
		t.Fatalf("removed callbacks still fire: %d/%d", removedUpdates.Load(), removedRemoves.Load())
	}
}

// TestRandomAndSiblingOnlyOnline: GetRandomNodeAddressByType and
// GetSiblingNodeAddress offer only online nodes (never taken, offline or
// shut down ones, nor the asker as a sibling), while GetNodeAddressesByType
// lists every status.
func TestRandomAndSiblingOnlyOnline(t *testing.T) {
	c := newCluster(t, 5, WithType("game"))
	g0, g1, taken, offline, gone := c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3], c.nodes[4]
	taken.SetStatus(StatusTaken)
	offline.SetStatus(StatusOffline)
	if err := gone.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() bool {
		return g0.IsNodeTaken(taken.GetMyEndPoint()) && g0.IsNodeOffline(offline.GetMyEndPoint()) &&
			!g0.IsNodeOnline(gone.GetMyEndPoint()) && g1.IsNodeTaken(taken.GetMyEndPoint()) && g1.IsNodeOffline(offline.GetMyEndPoint())
	}, "the statuses reach g0 and g1")
	if !taken.IsMyNodeTaken() || !offline.IsMyNodeOffline() || offline.IsMyNodeOnline() {
		t.Fatal("own status")
	}
	online := []string{g0.GetMyEndPoint(), g1.GetMyEndPoint()}
	for range 100 {
		if r := g0.GetRandomNodeAddressByType("game"); !slices.Contains(online, r) {
			t.Fatalf("GetRandomNodeAddressByType gave %q, online: %v", r, online)
		}
		if s := g0.GetSiblingNodeAddress(); s != g1.GetMyEndPoint() {
			t.Fatalf("g0's sibling %q, want %s", s, g1.GetMyEndPoint())
		}
		if s := g1.GetSiblingNodeAddress(); s != g0.GetMyEndPoint() {
			t.Fatalf("g1's sibling %q, want %s", s, g0.GetMyEndPoint())
		}
	}
	if all := g0.GetNodeAddressesByType("game"); !slices.Contains(all, taken.GetMyEndPoint()) || !slices.Contains(all, offline.GetMyEndPoint()) {
		t.Fatalf("GetNodeAddressesByType leaves out taken or offline nodes: %v", all)
	}
	if g0.GetRandomNodeAddressByType("no-such-type") != "" {
		t.Fatal("random node of an unknown type")
	}
	g1.SetStatus(StatusTaken)
	eventually(t, 3*time.Second, func() bool { return g0.GetSiblingNodeAddress() == "" }, "no online sibling left for g0")
	for range 20 {
		if r := g0.GetRandomNodeAddressByType("game"); r != g0.GetMyEndPoint() {
			t.Fatalf("GetRandomNodeAddressByType gave %q; only g0 is online", r)
		}
	}
}

// TestShutdownTwiceAndAfter: Shutdown may be called twice (and at once
// from two goroutines); afterwards senders fail and lookups do not panic.
func TestShutdownTwiceAndAfter(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = a.Shutdown() }()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || a.Shutdown() != nil {
		t.Fatalf("Shutdown: %v", errs)
	}
	to := b.GetMyEndPoint()
	if err := a.Send(1, to, nil); !IsSendError(err) {
		t.Errorf("Send after Shutdown: %v", err)
	}
	if err := a.USend(1, to, nil); !IsSendError(err) {
		t.Errorf("USend after Shutdown: %v", err)
	}
	if err := a.SendMany(1, []string{to}, nil, 1); !IsSendError(err) {
		t.Errorf("SendMany after Shutdown: %v", err)
	}
	if _, err := a.SendRPC(1, to, nil); err == nil || errClass(err) == "unclassified" {
		t.Errorf("SendRPC after Shutdown: %v", err)
	}
	done := make(chan error, 1)
	a.SendRequest(1, to, map[string]interface{}{}, func(err error, _ map[string]interface{}) { done <- err })
	if err := <-done; err == nil {
		t.Error("SendRequest after Shutdown succeeded")
	}
	_ = a.GetNodeAddresses(nil)
	_ = a.GetRandomNodeAddressByType("node")
	_, _ = a.GetSharedData("x")
	a.SetNodeValue("v", 1)
	a.WaitForLatestNodeData()
	eventually(t, 3*time.Second, func() bool { return !b.IsNodeOnline(a.GetMyEndPoint()) }, "the shut-down node is offline for others")

	// The package level: Setup, Shutdown twice, Setup again.
	requireNoDefault(t)
	useMarsEnv(t, c.cfg.MarsPort)
	for range 2 {
		if err := Setup(""); err != nil {
			t.Fatal(err)
		}
		if err := Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartAsMARS: the package can run MARS itself; Setup finds it through
// the same configuration, Shutdown stops both.
func TestStartAsMARS(t *testing.T) {
	requireNoDefault(t)
	port := freeUDPPort(t)
	useMarsEnv(t, strconv.Itoa(int(port)))
	if err := StartAsMARS(""); err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			t.Skipf("MARS port %d taken meanwhile: %v", port, err)
		}
		t.Fatal(err)
	}
	if err := StartAsMARS(""); err == nil {
		t.Error("second StartAsMARS accepted")
	}
	if err := Setup(""); err != nil {
		Shutdown()
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() bool { return IsPartOfCluster() && len(GetNodeAddresses(nil)) == 1 }, "the node syncs with the in-process MARS")
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	// MARS is gone: its port can be bound again.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatalf("MARS port still bound after Shutdown: %v", err)
	}
	c.Close()
}
