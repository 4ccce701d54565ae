package mesh

import (
	"fmt"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// TestFailoverAcrossMarsAddresses: marsAddress lists two MARS (127.0.0.1
// and 127.0.0.2, one port); when the first dies, nodes move to the second
// within retryTimeout (plus jitter and a sync interval), keep serving RPCs
// meanwhile, and are listed there.
func TestFailoverAcrossMarsAddresses(t *testing.T) {
	m1, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	port := m1.Addr().Port()
	m2, err := mars.Listen(fmt.Sprintf("127.0.0.2:%d", port), mars.ServerOptions{Logger: quiet})
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2 (loopback /8 not routed here): %v", err)
	}
	defer m2.Close()
	cfg := testConfig(port)
	cfg.MarsAddress = "127.0.0.1,127.0.0.2"
	var nodes []*Node
	for range 2 {
		n, err := New(cfg, WithLogger(quiet), WithSyncInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer n.Shutdown()
		nodes = append(nodes, n)
	}
	a, b := nodes[0], nodes[1]
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	eventually(t, 10*time.Second, func() bool { return len(a.GetNodeAddresses(nil)) == 2 }, "a sees both via the first MARS")

	m1.Close()
	closed := time.Now()
	obsCfg := testConfig(port)
	obsCfg.MarsAddress = "127.0.0.2"
	obs, err := New(obsCfg, WithLogger(quiet), WithSyncInterval(100*time.Millisecond), AsGuest())
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Shutdown()
	for time.Since(closed) < 5*time.Second {
		if _, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("x")); err != nil {
			t.Fatalf("RPC during the failover: %v", err)
		}
		if obs.GetNode(a.GetMyEndPoint()) != nil && obs.GetNode(b.GetMyEndPoint()) != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, 10*time.Second, func() bool {
		return obs.GetNode(a.GetMyEndPoint()) != nil && obs.GetNode(b.GetMyEndPoint()) != nil
	}, "the second MARS lists both nodes")
	t.Logf("both nodes listed by the second MARS %v after the first closed (retryTimeout %d ms)", time.Since(closed), cfg.RetryTimeout)
	eventually(t, 5*time.Second, func() bool { return a.InTouchWithMars() && len(a.GetNodeAddresses(nil)) == 2 }, "a in touch again")
}
