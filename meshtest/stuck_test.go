package meshtest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/meshtest"
)

// The check: on node w, registry callbacks that block 10 s and a
// membership subscriber that never returns (and a WatchNodes channel
// never read) make w neither go offline nor answer RPCs late, and another
// subscriber of w still gets every event, in order, while nodes restart
// and shared data changes around it.
func TestStuckCallbacksHoldUpNothing(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{Nodes: 3, Init: echo})
	w, peer := c.Nodes()[0], c.Nodes()[1]
	release := make(chan struct{})
	defer close(release) // before the cluster's cleanup
	block := func() {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}
	w.OnUpdate(block)
	w.OnUpdated(block)
	w.OnSharedDataUpdate(func(string, int16) { block() })
	w.OnNodeEvent(func(mesh.NodeEvent) { <-release })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.WatchNodes(ctx) // never read
	var free, aboutW events
	defer w.OnNodeEvent(free.add)()
	defer peer.OnNodeEvent(aboutW.add)()

	var slowest time.Duration
	call := func(from, to *mesh.Node) {
		t.Helper()
		start := time.Now()
		if _, err := from.SendRPC(cmdEcho, to.GetMyEndPoint(), []byte("x")); err != nil {
			t.Fatalf("RPC from %s to %s: %v", from.GetMyEndPoint(), to.GetMyEndPoint(), err)
		}
		slowest = max(slowest, time.Since(start))
	}
	type life struct {
		addr     string
		old, new uint64
	}
	var lives []life
	for i := range 3 {
		old := c.Nodes()[2]
		oldInc := old.Mars().Incarnation()
		peer.SetSharedData("round", int16(i))
		n := c.Restart(old)
		lives = append(lives, life{n.GetMyEndPoint(), oldInc, n.Mars().Incarnation()})
		c.WaitState(w, n.GetMyEndPoint(), mesh.StateOnline)
		call(w, n)
		call(n, w)
		call(peer, w)
	}
	c.Eventually(func() bool {
		l := lives[len(lives)-1]
		return slices.Equal(free.incStates(l.addr, l.new), []mesh.NodeState{mesh.StateJoining, mesh.StateOnline})
	}, "the free subscriber has the last successor online")
	for _, l := range lives {
		if got, want := free.incStates(l.addr, l.old), []mesh.NodeState{mesh.StateDraining, mesh.StateGone}; !slices.Equal(got[max(len(got)-2, 0):], want) {
			t.Errorf("the free subscriber saw %s (inc %d) go %v, want ... %v", l.addr, l.old, got, want)
		}
		if got, want := free.incStates(l.addr, l.new), []mesh.NodeState{mesh.StateJoining, mesh.StateOnline}; !slices.Equal(got[:min(len(got), 2)], want) {
			t.Errorf("the free subscriber saw %s (inc %d) come %v, want %v ...", l.addr, l.new, got, want)
		}
	}
	if got := aboutW.states(w.GetMyEndPoint()); !slices.Equal(got, []mesh.NodeState{mesh.StateOnline}) {
		t.Errorf("a peer saw w go %v, want online all along", got)
	}
	if !w.InTouchWithMars() || w.NodeState(w.GetMyEndPoint()) != mesh.StateOnline {
		t.Error("w lost its place while its callbacks block")
	}
	// An RPC that waited for a blocked callback would take 10 s.
	if slowest > 5*time.Second {
		t.Errorf("the slowest RPC to or from w took %v", slowest)
	}
	t.Logf("slowest RPC to or from w: %v", slowest)
}
