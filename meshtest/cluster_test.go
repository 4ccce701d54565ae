package meshtest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/meshtest"
	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

func TestMain(m *testing.M) { leaktestMain(m) }

const cmdEcho uint16 = 2

func echo(n *mesh.Node) {
	n.HandleRPC(cmdEcho, func(d []byte, _ string) ([]byte, error) { return d, nil })
}

// Isolate cuts a node off from MARS and its peers: they list it offline,
// it knows it lost MARS; Heal brings it back online everywhere.
func TestIsolateAndHeal(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{Nodes: 3})
	a, b, x := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
	c.Isolate(x.GetMyEndPoint())
	c.WaitState(a, x.GetMyEndPoint(), mesh.StateOffline)
	c.WaitState(b, x.GetMyEndPoint(), mesh.StateOffline)
	c.Eventually(func() bool { return !x.InTouchWithMars() }, "the isolated node knows it lost MARS")
	c.Heal()
	c.WaitSettled()
}

// A one-way cut: b hears nothing from a any more and finds it dead,
// although a still hears b.
func TestCutOneWay(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{Nodes: 2, Init: echo})
	a, b := c.Nodes()[0], c.Nodes()[1]
	if _, err := b.SendRPC(cmdEcho, a.GetMyEndPoint(), []byte("x")); err != nil {
		t.Fatal(err) // a session between them
	}
	c.Cut(a.GetMyEndPoint(), b.GetMyEndPoint())
	c.WaitState(b, a.GetMyEndPoint(), mesh.StateOffline)
	c.Heal()
	c.WaitSettled()
	if _, err := b.SendRPC(cmdEcho, a.GetMyEndPoint(), []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// Partition both ways between two nodes that had a session: a call across
// it fails with a send error, a finds b silent and lists it offline, and
// both stay in touch with MARS.
func TestPartitionTwoNodes(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{Nodes: 2, Init: echo})
	a, b := c.Nodes()[0], c.Nodes()[1]
	var ev events
	defer a.OnNodeEvent(ev.add)()
	if _, err := a.SendRPC(cmdEcho, b.GetMyEndPoint(), []byte("x")); err != nil {
		t.Fatal(err) // a session, which the partition makes silent
	}
	c.Partition(a.GetMyEndPoint(), b.GetMyEndPoint())
	if _, err := a.SendRPC(cmdEcho, b.GetMyEndPoint(), []byte("x")); !mesh.IsSendError(err) {
		t.Fatalf("an RPC across a partition: %v", err)
	}
	c.Eventually(func() bool { return slices.Contains(ev.states(b.GetMyEndPoint()), mesh.StateOffline) },
		"a lists b offline")
	if !a.InTouchWithMars() || !b.InTouchWithMars() {
		t.Fatal("a partition between two nodes cut them off MARS")
	}
	c.Heal()
	c.WaitSettled()
}

// Shutdown drains: the others see the node drain, then go.
func TestShutdownDrains(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{Nodes: 3})
	a, x := c.Nodes()[0], c.Nodes()[2]
	var ev events
	defer a.OnNodeEvent(ev.add)()
	addr := x.GetMyEndPoint()
	if err := c.Shutdown(x); err != nil {
		t.Fatal(err)
	}
	c.WaitState(a, addr, mesh.StateNone)
	// Lookups change with the view; the events reach the handler through
	// a's dispatcher, a moment later.
	c.Eventually(func() bool { return slices.Contains(ev.states(addr), mesh.StateGone) }, "a's handler hears %s is gone", addr)
	if got, want := ev.states(addr), []mesh.NodeState{mesh.StateOnline, mesh.StateDraining, mesh.StateGone}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("a saw %s go %v, want %v", addr, got, want)
	}
	if len(c.Nodes()) != 2 {
		t.Fatalf("Nodes lists %d nodes", len(c.Nodes()))
	}
	c.WaitSettled()
}

// Loopback with a cluster key: real sockets; a node made outside the
// cluster with its Config joins it; kill and restart work as in memory.
func TestLoopbackKeyed(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{Nodes: 2, Loopback: true, Key: true, Init: echo})
	if c.Network() != nil {
		t.Fatal("a network on loopback")
	}
	outside, err := mesh.New(c.Config(), mesh.WithSyncInterval(100e6))
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Shutdown()
	if err := outside.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := c.Nodes()[0], c.Nodes()[1]
	if _, err := outside.SendRPC(cmdEcho, b.GetMyEndPoint(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Kill(b)
	c.WaitState(a, b.GetMyEndPoint(), mesh.StateOffline)
	b2 := c.Restart(b)
	if b2.GetMyEndPoint() != b.GetMyEndPoint() {
		t.Fatalf("restarted on %s, not %s", b2.GetMyEndPoint(), b.GetMyEndPoint())
	}
	c.WaitState(outside, b2.GetMyEndPoint(), mesh.StateOnline)
	if _, err := outside.SendRPC(cmdEcho, b2.GetMyEndPoint(), []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// On a lossy network that also duplicates and reorders, every RPC is
// answered.
func TestLossyNetwork(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{
		Nodes: 3, Init: echo, Seed: 7,
		Faults: faultnet.Faults{Loss: 0.05, Duplicate: 0.05, Reorder: 0.05, Jitter: 2e6},
	})
	a := c.Nodes()[0]
	for i := range 100 {
		to := c.Nodes()[1+i%2].GetMyEndPoint()
		if resp, err := a.SendRPC(cmdEcho, to, []byte{byte(i)}); err != nil || len(resp) != 1 || resp[0] != byte(i) {
			t.Fatalf("RPC %d to %s: %v %v", i, to, resp, err)
		}
	}
	if c.Network().Dropped.Load() == 0 {
		t.Fatal("the network dropped nothing")
	}
}

// A restart of a node that still runs drains it first; Init runs for the
// new incarnation too.
func TestRestartRunningNode(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{Nodes: 2, Init: echo})
	a, b := c.Nodes()[0], c.Nodes()[1]
	b2 := c.Restart(b)
	if !b.IsDraining() {
		t.Fatal("the old incarnation did not drain")
	}
	c.WaitState(a, b2.GetMyEndPoint(), mesh.StateOnline)
	if _, err := a.SendRPC(cmdEcho, b2.GetMyEndPoint(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SendRPC(cmdEcho, a.GetMyEndPoint(), nil); err == nil {
		t.Fatalf("the old incarnation sends: %v", err)
	}
}
