package mesh

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nodeEvents records the events one subscriber gets.
type nodeEvents struct {
	mu  sync.Mutex
	got []NodeEvent
}

func (e *nodeEvents) add(ev NodeEvent) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

// states lists "new state" of addr's events, in order, for incarnation inc
// (any when 0).
func (e *nodeEvents) states(addr string, inc uint64) []NodeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []NodeState
	for _, ev := range e.got {
		if ev.Addr == addr && (inc == 0 || ev.Incarnation == inc) {
			out = append(out, ev.New)
		}
	}
	return out
}

// The README's pattern, SendMany to GetNodeAddressesByType, while a node
// leaves gracefully: no fan-out fails or stalls, because the leaving node
// is out of the list as soon as it drains. (It used to block retryTimeout
// and fail for ~10 s after the node left: the list held nodes of any
// status.)
func TestSendManyToTypeWhileANodeLeaves(t *testing.T) {
	c := newCluster(t, 4, WithType("game"))
	var got atomic.Int64
	for _, n := range c.nodes {
		n.HandleCommand(20, func(map[string]interface{}) ([]byte, error) { got.Add(1); return nil, nil })
	}
	driver, leaver := c.nodes[0], c.nodes[3]
	stop := make(chan struct{})
	errs := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		defer close(errs)
		for {
			select {
			case <-stop:
				return
			default:
			}
			games := driver.GetNodeAddressesByType("game")
			if err := driver.SendMany(20, games, map[string]interface{}{"x": 1}, 2); err != nil {
				errs <- fmt.Errorf("SendMany to %v: %w", games, err)
				return
			}
			sent.Add(1)
		}
	}()
	for sent.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	if err := leaver.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return driver.NodeState(leaver.GetMyEndPoint()) == StateNone }, "the leaver is gone")
	at := sent.Load()
	for sent.Load() < at+20 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// RPCs to nodes picked from the list while one of them shuts down: no
// call fails with a timeout or a send error; a call that races the drain
// gets ErrDraining.
func TestRPCsDuringShutdownNeverTimeOut(t *testing.T) {
	c := newCluster(t, 3, WithType("game"))
	for _, n := range c.nodes {
		n.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	}
	driver, leaver := c.nodes[0], c.nodes[2]
	var wg sync.WaitGroup
	var bad atomic.Value
	var draining, ok atomic.Int64
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				games := driver.GetNodeAddressesByType("game")
				if len(games) == 0 {
					continue
				}
				_, err := driver.SendRPC(1, games[(i+w)%len(games)], []byte("x"))
				switch {
				case err == nil:
					ok.Add(1)
				case IsDraining(err):
					draining.Add(1)
				default:
					bad.Store(err)
				}
			}
		})
	}
	for ok.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	if err := leaver.Shutdown(); err != nil {
		t.Fatal(err)
	}
	at := ok.Load()
	for ok.Load() < at+50 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err := bad.Load(); err != nil {
		t.Fatalf("a call failed while a node shut down: %v", err)
	}
	t.Logf("%d calls answered, %d refused with ErrDraining", ok.Load(), draining.Load())
}

// Membership events: a subscriber sees a node join, go online, drain and
// leave, in order, on the node's dispatcher; WatchNodes starts with the
// current view; a subscriber that never reads and a callback that blocks
// hold up neither the node nor the others.
func TestNodeEvents(t *testing.T) {
	c := newCluster(t, 1)
	watcher := c.nodes[0]
	var free nodeEvents
	defer watcher.OnNodeEvent(free.add)()
	block := make(chan struct{})
	defer close(block)
	watcher.OnNodeEvent(func(NodeEvent) { <-block }) // stuck from its first event
	watcher.OnUpdated(func() { <-block })            // a registry callback, stuck
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watcher.WatchNodes(ctx) // never read

	n := c.add()
	addr, inc := n.GetMyEndPoint(), n.mc.Incarnation()
	eventually(t, 10*time.Second, func() bool { return slices.Contains(free.states(addr, inc), StateOnline) }, "online event")
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return slices.Contains(free.states(addr, inc), StateGone) }, "gone event")
	want := []NodeState{StateJoining, StateOnline, StateDraining, StateGone}
	if got := free.states(addr, inc); !slices.Equal(got, want) {
		t.Fatalf("events of a graceful life %v, want %v", got, want)
	}
	if !watcher.InTouchWithMars() || watcher.NodeState(watcher.GetMyEndPoint()) != StateOnline {
		t.Fatal("the watcher lost its place while its callbacks block")
	}

	ch := watcher.WatchNodes(ctx)
	first := <-ch
	if first.Old != StateNone || first.Reason != ReasonCurrent || first.Addr != watcher.GetMyEndPoint() {
		t.Fatalf("WatchNodes starts with %v, want the current view", first)
	}
}

// WaitReady returns only once the node is in its own view, online: nodes
// started in pairs each see themselves at once. (It used to return before
// the node was in its view, 1 time in 10.)
func TestWaitReadyMeansInOwnView(t *testing.T) {
	c := newCluster(t, 0)
	for range 5 {
		var wg sync.WaitGroup
		var nodes [2]*Node
		for i := range nodes {
			wg.Go(func() {
				n, err := New(c.cfg, WithLogger(quiet), WithSyncInterval(200*time.Millisecond), WithType("pair"))
				if err != nil {
					t.Error(err)
					return
				}
				t.Cleanup(func() { n.Shutdown() })
				if err := n.WaitReady(context.Background()); err != nil {
					t.Error(err)
					return
				}
				if !slices.Contains(n.GetNodeAddressesByType("pair"), n.GetMyEndPoint()) {
					t.Errorf("ready, but %s is not in its own list", n.GetMyEndPoint())
				}
				nodes[i] = n
			})
		}
		wg.Wait()
	}
}

// A node value reads back as int64 whatever its size and whoever reads it.
func TestNodeValueIsInt64Everywhere(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	a.SetNodeValue("small", 7)
	a.SetNodeValue("big", 200)
	a.SetNodeValue("neg", -5)
	eventually(t, 10*time.Second, func() bool { return b.GetNodeValue(a.GetMyEndPoint(), "neg") != nil }, "b sees a's values")
	for _, name := range []string{"small", "big", "neg"} {
		if _, ok := b.GetNodeValue(a.GetMyEndPoint(), name).(int64); !ok {
			t.Errorf("remote %s: %T", name, b.GetNodeValue(a.GetMyEndPoint(), name))
		}
		if _, ok := a.GetMyNodeValue(name).(int64); !ok {
			t.Errorf("own %s: %T", name, a.GetMyNodeValue(name))
		}
	}
}

// A stream opened to a draining node is refused with ErrDraining, and the
// refusal carries the drain notice: the opener lists the node draining.
func TestStreamToDrainingNode(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleStream(3, func(ctx context.Context, s *Stream) error { return nil })
	release := make(chan struct{})
	b.SetCheckForShutdownReadiness(func() bool {
		select {
		case <-release:
			return true
		default:
			return false
		}
	})
	done := make(chan error, 1)
	go func() { done <- b.Shutdown() }()
	eventually(t, 10*time.Second, b.IsDraining, "b drains")
	a.mc.View().MarkReachable(b.GetMyEndPoint(), 0) // a has not heard yet (no session): it asks
	s, err := a.OpenStream(context.Background(), 3, b.GetMyEndPoint(), []byte("x"))
	if err == nil {
		_, err = s.Recv()
		s.Close()
	}
	close(release)
	if !IsDraining(err) {
		t.Fatalf("stream to a draining node: %v, want ErrDraining", err)
	}
	if st := a.NodeState(b.GetMyEndPoint()); st != StateDraining && st != StateNone {
		t.Fatalf("the opener lists the draining node %v", st)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
