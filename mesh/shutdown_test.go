package mesh

import (
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// TestShutdownOfflineFirst: with a readiness check, Shutdown marks the
// node offline in its own status and at MARS before the check returns
// true, and the node keeps serving while the check says no.
func TestShutdownOfflineFirst(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	var calls atomic.Int32
	var sawOffline, sawSelfOffline, servedWhileDraining atomic.Bool
	b.SetCheckForShutdownReadiness(func() bool {
		if calls.Add(1) == 1 {
			sawSelfOffline.Store(b.IsMyNodeOffline())
			// What a sees after two syncs of its own is what MARS had
			// before the check returned.
			a.WaitForLatestNodeData()
			m, ok := a.mc.View().Node(b.GetMyEndPoint())
			sawOffline.Store(ok && m.Status == mars.StatusOffline)
			_, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("x"))
			servedWhileDraining.Store(err == nil)
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
		t.Fatal("the node was not offline in its own status when the check ran")
	}
	if !sawOffline.Load() {
		t.Fatal("MARS did not list the node offline when the check ran")
	}
	if !servedWhileDraining.Load() {
		t.Fatal("the draining node did not answer an RPC")
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
