package mesh

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestSharedDataAndValuesPropagate(t *testing.T) {
	c := newCluster(t, 3, WithType("game"))
	a := c.nodes[0]
	var updates atomic.Int32
	for _, n := range c.nodes {
		n.OnSharedDataUpdate(func(key string, v int16) {
			if key == "rooms" && v == 7 {
				updates.Add(1)
			}
		})
	}
	start := time.Now()
	if !a.SetSharedData("rooms", 7) {
		t.Fatal("SetSharedData refused")
	}
	a.SetNodeValue("load", 42)
	a.SetStatus(StatusTaken)
	eventually(t, 2*time.Second, func() bool {
		for _, n := range c.nodes {
			v, ok := n.GetSharedData("rooms")
			if !ok || v != 7 || n.GetNodeValue(a.GetMyEndPoint(), "load") == nil || !n.IsNodeTaken(a.GetMyEndPoint()) {
				return false
			}
		}
		return true
	}, "shared data, value and status reach every node")
	t.Logf("propagated in %v", time.Since(start))
	if GetInt(c.nodes[1].GetNodeValues(a.GetMyEndPoint()), "load") != 42 {
		t.Fatalf("values %v", c.nodes[1].GetNodeValues(a.GetMyEndPoint()))
	}
	eventually(t, 2*time.Second, func() bool { return updates.Load() == 3 }, "OnSharedDataUpdate fires on every node")
	// A taken node is not offered as a random or sibling node.
	for range 20 {
		if got := c.nodes[1].GetRandomNodeAddressByType("game"); got == a.GetMyEndPoint() || got == "" {
			t.Fatalf("random node %q", got)
		}
	}
	if !a.RemoveSharedData("rooms") {
		t.Fatal("RemoveSharedData refused")
	}
	eventually(t, 2*time.Second, func() bool {
		_, ok := c.nodes[2].GetSharedData("rooms")
		return !ok
	}, "removal propagates")
	if a.SetSharedData(string(make([]byte, 55)), 1) {
		t.Fatal("55-byte key accepted")
	}
}

func TestLookups(t *testing.T) {
	c := newCluster(t, 0)
	a := c.add(WithType("lobby"), WithRole(TCPRole), WithEndPoint("203.0.113.1:7000"), WithValues(map[string]interface{}{"region": "eu"}))
	b := c.add(WithType("game"), WithRole(UDPRole), WithEndPoint("203.0.113.2:7000"))
	g := c.add(WithType("game"), WithRole(UDPRole), WithEndPoint("203.0.113.2:7001"))
	c.waitListed(3)
	if got := a.GetNodeAddressesByType("game"); len(got) != 2 {
		t.Fatalf("by type: %v", got)
	}
	if got := a.GetNodeAddressesByRole(TCPRole); len(got) != 1 || got[0] != a.GetMyEndPoint() {
		t.Fatalf("by role: %v", got)
	}
	if got := b.GetNodeMeshEndpoint("203.0.113.1:7000"); got != a.GetMyEndPoint() {
		t.Fatalf("mesh endpoint: %q", got)
	}
	if got := b.GetNodeEndPoint(a.GetMyEndPoint()); got != "203.0.113.1:7000" {
		t.Fatalf("endpoint: %q", got)
	}
	rec := a.GetNode(b.GetMyEndPoint())
	if rec == nil || rec.Type != "game" || rec.Role != UDPRole || rec.Self {
		t.Fatalf("record %+v", rec)
	}
	if self := a.GetNode(a.GetMyEndPoint()); self == nil || !self.Self {
		t.Fatalf("own record %+v", self)
	}
	if got := b.GetNodeByEndPoint("203.0.113.1:7000"); got == nil || got.Addr != a.GetMyEndPoint() {
		t.Fatalf("by endpoint %+v", got)
	}
	if got := b.GetSiblingNodeAddress(); got != g.GetMyEndPoint() {
		t.Fatalf("sibling %q", got)
	}
	if got := b.GetNodeValue(a.GetMyEndPoint(), "region"); got != "eu" {
		t.Fatalf("value %v", got)
	}
	if got := a.GetNodesWithDifferentPublicAddr(); len(got) != 2 {
		t.Fatalf("different public addr: %v", got)
	}
	if got := b.GetNodesWithDifferentPublicAddr(); len(got) != 1 || got[0] != a.GetMyEndPoint() {
		t.Fatalf("different public addr from b: %v", got)
	}
	if a.GetNodeRoleByType("game") != UDPRole || a.GetNodeTypeByAddress(b.GetMyEndPoint()) != "game" {
		t.Fatal("role/type lookups")
	}
	if types := a.GetNodeTypes(); len(types) != 2 {
		t.Fatalf("types %v", types)
	}
	if !a.IsMyNodeOnline() || a.IsMyNodeTaken() || a.GetMyNodeType() != "lobby" || a.GetMyNodeEndPoint() != "203.0.113.1:7000" {
		t.Fatal("own state")
	}
	a.SetNodeType("lobby2")
	eventually(t, 2*time.Second, func() bool { return b.GetNodeTypeByAddress(a.GetMyEndPoint()) == "lobby2" }, "type change propagates")
}

// TestKilledNodeLeaves: a node whose process dies (socket gone, no
// goodbye) fails RPCs within retryTimeout + 1 s and drops out of lookups.
func TestKilledNodeLeaves(t *testing.T) {
	c := newCluster(t, 3)
	a, victim := c.nodes[0], c.nodes[2]
	inHandler := make(chan struct{}, 1)
	victim.HandleRPCWithContext(1, func(ctx context.Context, d []byte, _ string) ([]byte, error) {
		inHandler <- struct{}{}
		<-ctx.Done()
		return d, nil
	})
	addr := victim.GetMyEndPoint()
	errc := make(chan error, 1)
	go func() { _, err := a.SendRPC(1, addr, []byte("x")); errc <- err }()
	<-inHandler       // the request is in the handler
	victim.mc.Close() // stop reporting, and...
	start := time.Now()
	victim.tr.Abort() // ...the socket goes: peers see silence
	select {
	case err := <-errc:
		if !IsSendError(err) {
			t.Fatalf("RPC to a killed node: %v", err)
		}
		if el := time.Since(start); el > time.Duration(c.cfg.RetryTimeout)*time.Millisecond+time.Second {
			t.Fatalf("failed after %v", el)
		}
		t.Logf("pending RPC failed after %v: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("pending RPC did not fail")
	}
	eventually(t, 6*time.Second, func() bool { return a.GetNode(addr) == nil }, "the killed node leaves the view")
	if _, err := a.SendRPC(1, addr, nil); !IsSendError(err) {
		t.Fatalf("RPC after death: %v", err)
	}
}
