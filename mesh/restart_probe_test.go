package mesh

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/testport"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// TestPendingCallFailsWhenPeerRestarts: a node crashes (no goodbye) while
// a call waits in its handler, and a new process starts on its address at
// once. With the keepalive and the silence limit a minute away, only the
// sweeper's probe of a peer with a waiting call can find the restart: the
// call fails with a send error (not a timeout), and the next call reaches
// the new process. With and without a cluster key.
func TestPendingCallFailsWhenPeerRestarts(t *testing.T) {
	k, err := rudp.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			var keys [][32]byte
			if keyed {
				keys = [][32]byte{k}
			}
			srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet, Transport: rudp.Config{Keys: keys}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			cfg := testConfig(srv.Addr().Port())
			cfg.RetryInterval, cfg.RetryTimeout = 60000, 240000 // keepalive every minute
			if keyed {
				cfg.MeshKey = config.EncodeKey(k)
			}
			start := func(port string) *Node {
				t.Helper()
				c := cfg
				c.Port = port
				n, err := New(c, WithLogger(quiet), WithSyncInterval(200*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { n.Shutdown() })
				select {
				case <-n.Ready():
				case <-time.After(30 * time.Second):
					t.Fatal("node did not sync with MARS")
				}
				return n
			}
			// The victim's port is from below the ephemeral range (see
			// testport): nothing else is handed it while it is down.
			a, victim := start("0"), start(strconv.Itoa(testport.Free(t)))
			inHandler, release := make(chan struct{}, 1), make(chan struct{})
			t.Cleanup(func() { close(release) }) // before the nodes' Shutdown
			victim.HandleRPCWithContext(1, func(ctx context.Context, d []byte, _ string) ([]byte, error) {
				inHandler <- struct{}{}
				select {
				case <-ctx.Done():
				case <-release:
				}
				return d, nil
			})
			addr := victim.GetMyEndPoint()
			errc := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, err := a.SendRPCWithContext(ctx, 1, addr, []byte("x"))
				errc <- err
			}()
			<-inHandler
			victim.mc.Close()
			victim.tr.Abort() // crashed: no goodbye
			succ := start(fmt.Sprint(victim.tr.LocalAddr().Port()))
			if succ.GetMyEndPoint() != addr {
				t.Fatalf("the successor listens on %s, not %s", succ.GetMyEndPoint(), addr)
			}
			restarted := time.Now()
			succ.HandleRPC(2, func(d []byte, _ string) ([]byte, error) { return append([]byte("new "), d...), nil })
			select {
			case err := <-errc:
				if !IsSendError(err) || IsRequestTimeoutError(err) {
					t.Fatalf("the call pending on the crashed process: %v, want a send error", err)
				}
				t.Logf("the pending call failed %v after the successor started: %v", time.Since(restarted), err)
			case <-time.After(30 * time.Second):
				t.Fatal("the pending call still waits 30 s after the restart (the keepalive is a minute away)")
			}
			eventually(t, 10*time.Second, func() bool {
				resp, err := a.SendRPC(2, addr, []byte("hi"))
				return err == nil && string(resp) == "new hi"
			}, "the next call reaches the new process")
		})
	}
}
