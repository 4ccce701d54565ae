package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// Stream handlers of the node processes (TestHelperNode), and what they
// tell the test process.
const (
	e2eStreamEcho  uint16 = 7100 // echoes every message until CloseSend
	e2eStreamSlow  uint16 = 7101 // reads one message per e2eSlowRead
	e2eStreamBlock uint16 = 7102 // waits for its context, then notifies the opener
	e2eNotify      uint16 = 7103 // command on the test's node: "cancelled <sid>"

	e2eSlowRead = 20 * time.Millisecond
	// e2eLossyType: a node process of this type loses e2eLoss of the
	// datagrams it sends and of those it receives.
	e2eLossyType = "stream-lossy"
	e2eLoss      = 0.10
	// e2eLossyRetryTimeout is the retry timeout (ms) on the lossy link.
	e2eLossyRetryTimeout = 3000
	// e2eHeavyRetryTimeout is the retry timeout (ms) of both ends of the
	// 1000 concurrent streams: a loaded 2-core machine stalls a process
	// (or the read loop of one with 1000 runnable goroutines) for more
	// than 1 s now and then, and with 1 s a stall was a dead peer.
	e2eHeavyRetryTimeout = 3000
)

func init() {
	// Registered in every process; only node processes serve them (the
	// default node of this test binary is otherwise made by tests that
	// do not open these streams).
	HandleStream(e2eStreamEcho, echoStream)
	HandleStream(e2eStreamSlow, func(ctx context.Context, s *Stream) error {
		for {
			if _, err := s.Recv(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			time.Sleep(e2eSlowRead)
		}
	})
	HandleStream(e2eStreamBlock, func(ctx context.Context, s *Stream) error {
		<-ctx.Done()
		Send(e2eNotify, s.Addr(), []byte("cancelled"))
		return ctx.Err()
	})
	if os.Getenv(e2eNodeEnv) != "" && os.Getenv(e2eTypeEnv) == e2eLossyType {
		// Under loss a link needs the default retry timeout: with 1 s, a
		// session moving 1 MiB messages was declared dead.
		os.Setenv("DIARKIS_RETRY_TIMEOUT", fmt.Sprint(e2eLossyRetryTimeout))
		listenScan = func(host string, port, tries int, cfg rudp.Config) (*rudp.Transport, error) {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), 0)))
			if err != nil {
				return nil, err
			}
			return rudp.New(&streamLossyConn{UDPConn: c, loss: e2eLoss}, cfg)
		}
	}
}

// streamLossyConn drops a share of the datagrams it sends and receives.
type streamLossyConn struct {
	*net.UDPConn
	loss float64
}

func (c *streamLossyConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, a, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil || rand.Float64() >= c.loss {
			return n, a, err
		}
	}
}

func (c *streamLossyConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if rand.Float64() < c.loss {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

func (c *streamLossyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.ReadFromUDPAddrPort(b)
	return n, net.UDPAddrFromAddrPort(a), err
}

func (c *streamLossyConn) WriteTo(b []byte, to net.Addr) (int, error) {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("not a UDP address: %v", to)
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

// TestStreamE2E runs streams between this process and node processes over
// real UDP on 127.0.0.1.
func TestStreamE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with processes; skipped with -short")
	}
	mp := startMarsServer(t, buildMarsServer(t), "-offline-after", "2s", "-remove-after", "3s")
	cfgPath := e2eConfig(t)
	types := []string{e2eLossyType, "stream", "stream"}
	procs := make([]*procNode, len(types))
	errs := make([]error, len(types))
	var wg sync.WaitGroup
	for i, typ := range types {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var env []string
			if i == 1 { // plain: the far end of the 1000 concurrent streams
				env = append(env, fmt.Sprintf("DIARKIS_RETRY_TIMEOUT=%d", e2eHeavyRetryTimeout))
			}
			procs[i], errs[i] = startProcNode(t, fmt.Sprintf("proc%d", i), mp.port, cfgPath, typ, env...)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, p := range procs {
			if p != nil {
				p.stop()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	lossy, plain, victim := procs[0], procs[1], procs[2]
	cfg := testConfig(mp.port)
	cfg.RetryTimeout = e2eRetryTimeout
	n, err := New(cfg, WithType("driver"), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	notified := make(chan time.Time, 16)
	n.SetCommandHandler(e2eNotify, func([]byte, string) ([]byte, error) { notified <- time.Now(); return nil, nil })
	eventually(t, 20*time.Second, func() bool { return len(n.GetNodeAddresses(nil)) >= 4 }, "the driver lists 4 nodes")

	t.Run("mixed sizes under loss", func(t *testing.T) {
		lcfg := cfg
		lcfg.RetryTimeout = e2eLossyRetryTimeout
		ln, err := New(lcfg, WithType("driver"), WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Shutdown()
		eventually(t, 20*time.Second, func() bool { return ln.IsPartOfCluster() }, "the second driver syncs")
		const count = 1000 // every 50th message is about 1 MiB
		began := time.Now()
		runEcho(t, ln, e2eStreamEcho, lossy.addr, count, 1<<20)
		t.Logf("%d messages (0 B..1 MiB) echoed in order through %.0f%% loss each way in %v", count, e2eLoss*100, time.Since(began))
	})

	t.Run("slow reader holds up nothing else", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		slow, err := n.OpenStream(ctx, e2eStreamSlow, plain.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		go func() {
			for i := 0; ctx.Err() == nil; i++ {
				if slow.Send(mixedMessage(i, 64<<10)) != nil {
					return
				}
			}
		}()
		eventually(t, 20*time.Second, func() bool {
			slow.mu.Lock()
			defer slow.mu.Unlock()
			return slow.wantSent
		}, "the slow stream's writer waits for credit")
		echo, err := n.OpenStream(ctx, e2eStreamEcho, plain.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer echo.Close()
		const rounds = 200
		var rpc, stream []time.Duration
		for i := range rounds {
			t0 := time.Now()
			if _, err := n.SendRPC(e2eEcho, plain.addr, []byte("ping")); err != nil {
				t.Fatalf("RPC %d: %v", i, err)
			}
			rpc = append(rpc, time.Since(t0))
			t0 = time.Now()
			if err := echo.Send([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := echo.Recv(); err != nil {
				t.Fatal(err)
			}
			stream = append(stream, time.Since(t0))
		}
		p50r, p99r := percentiles(rpc)
		p50s, p99s := percentiles(stream)
		t.Logf("beside a stream whose reader sleeps %v per message: RPC p50 %v p99 %v; other stream round trip p50 %v p99 %v",
			e2eSlowRead, p50r, p99r, p50s, p99s)
		if bound := time.Second; p99r > bound || p99s > bound {
			t.Fatalf("p99 above %v beside a slow stream", bound)
		}
	})

	t.Run("cancel ends the handler's context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := n.OpenStream(ctx, e2eStreamBlock, plain.addr, []byte("go"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// The handler has the stream once an RPC sent after the open is answered.
		if _, err := n.SendRPC(e2eEcho, plain.addr, nil); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		cancel()
		select {
		case at := <-notified:
			t.Logf("the handler's context ended and its notice arrived %v after the cancel", at.Sub(t0))
		case <-time.After(10 * time.Second):
			t.Fatal("the handler's context did not end")
		}
		if _, err := s.Recv(); !IsRequestError(err) {
			t.Fatalf("Recv after cancel: %v", err)
		}
	})

	t.Run("1000 concurrent streams", func(t *testing.T) {
		hcfg := cfg
		hcfg.RetryTimeout = e2eHeavyRetryTimeout
		hn, err := New(hcfg, WithType("driver"), WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		defer hn.Shutdown()
		eventually(t, 20*time.Second, func() bool { return hn.IsPartOfCluster() }, "the third driver syncs")
		// The session with plain is set up before the streams load it.
		if _, err := hn.SendRPC(e2eEcho, plain.addr, nil); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 1000)
		for i := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := hn.OpenStream(context.Background(), e2eStreamEcho, plain.addr, []byte(fmt.Sprint(i)))
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				s.CloseSend()
				if m, err := s.Recv(); err != nil || string(m) != fmt.Sprint(i) {
					errs <- fmt.Errorf("stream %d: %q %v", i, m, err)
					return
				}
				if _, err := s.Recv(); err != io.EOF {
					errs <- fmt.Errorf("stream %d end: %v", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("killed handler process", func(t *testing.T) {
		s, err := n.OpenStream(context.Background(), e2eStreamBlock, victim.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := n.SendRPC(e2eEcho, victim.addr, nil); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		victim.kill()
		_, err = s.Recv()
		took := time.Since(t0)
		if !IsSendError(err) {
			t.Fatalf("Recv after the handler's process died: %v, want a send error", err)
		}
		t.Logf("the opener's Recv failed %v after the kill (retryTimeout %d ms)", took, e2eRetryTimeout)
		if bound := e2eRetryTimeout*time.Millisecond + 10*time.Second; took > bound {
			t.Fatalf("took %v, more than %v", took, bound)
		}
	})
}

// percentiles returns the p50 and p99 of ds.
func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100]
}
