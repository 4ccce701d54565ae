package mesh

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// TestShutdownDrainsFirst: while the readiness check says no, the node is
// draining everywhere (its own lists, its peers' lists, MARS), its status
// is offline, running work goes on, and a new request is refused at once
// with ErrDraining (not a timeout) so the caller can go elsewhere.
func TestShutdownDrainsFirst(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	if _, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("x")); err != nil { // a session: a hears the notice
		t.Fatal(err)
	}
	var calls atomic.Int32
	var sawSelfOffline, peerSawDraining, marsSawDraining, selfListed atomic.Bool
	var rpcErr atomic.Value
	b.SetCheckForShutdownReadiness(func() bool {
		if calls.Add(1) == 1 {
			sawSelfOffline.Store(b.IsMyNodeOffline())
			selfListed.Store(slices.Contains(b.GetNodeAddresses(nil), b.GetMyEndPoint()))
			peerSawDraining.Store(a.NodeState(b.GetMyEndPoint()) == StateDraining &&
				!slices.Contains(a.GetNodeAddresses(nil), b.GetMyEndPoint()))
			a.WaitForLatestNodeData()
			m, ok := c.nodes[0].mc.View().Node(b.GetMyEndPoint())
			marsSawDraining.Store(ok && m.Status == mars.StatusOffline && b.mc.View().State(b.GetMyEndPoint()) == StateDraining)
			_, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("x"))
			rpcErr.Store(fmt.Sprint(err, " draining=", IsDraining(err), " timeout=", IsRequestTimeoutError(err)))
		}
		return true
	})
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() == 0 {
		t.Fatal("readiness check not called")
	}
	if !sawSelfOffline.Load() {
		t.Error("the node was not offline in its own status when the check ran")
	}
	if selfListed.Load() {
		t.Error("the draining node still lists itself online")
	}
	if !peerSawDraining.Load() {
		t.Error("the peer did not list the node draining (and out of its lists) when the check ran")
	}
	if !marsSawDraining.Load() {
		t.Error("MARS did not list the node draining (status offline) when the check ran")
	}
	if got := rpcErr.Load().(string); !strings.HasSuffix(got, "draining=true timeout=false") {
		t.Errorf("an RPC to the draining node: %s", got)
	}
}

// TestShutdownOnSignal: the signal shuts the default node down and the
// channel reports it.
func TestShutdownOnSignal(t *testing.T) {
	c := newCluster(t, 0)
	t.Setenv("DIARKIS_MARS_PORT", c.cfg.MarsPort)
	t.Setenv("DIARKIS_PORT", "0")
	if err := Setup(""); err != nil {
		t.Fatal(err)
	}
	n := Default()
	done := ShutdownOnSignal(syscall.SIGUSR1)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no shutdown after the signal")
	}
	if Default() != nil || !n.life.closed.Load() {
		t.Fatal("the default node is still up")
	}
	if _, ok := <-done; ok {
		t.Fatal("channel not closed after the result")
	}
}
