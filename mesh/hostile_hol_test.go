package mesh

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// Hostile: head-of-line blocking. Node A's queue to a lossy peer B is
// full while B sends A requests that A must answer from its read
// goroutine; a healthy peer C must not notice anything.

// withRudp adjusts a node's transport config (tests only).
func withRudp(f func(*rudp.Config)) Option { return func(o *options) { o.rudpConfig = f } }

// lossyConn drops the given share of packets arriving from one address.
type lossyConn struct {
	*net.UDPConn
	mu   sync.Mutex
	rng  *rand.Rand
	from netip.AddrPort
	drop float64
}

func (c *lossyConn) dropped(a netip.AddrPort) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return a == c.from && c.rng.Float64() < c.drop
}

func (c *lossyConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, a, err := c.UDPConn.ReadFromUDPAddrPort(b)
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if err != nil || !c.dropped(a) {
			return n, a, err
		}
	}
}

func (c *lossyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.ReadFromUDPAddrPort(b)
	return n, net.UDPAddrFromAddrPort(a), err
}

// TestHostileHeadOfLine: with A->B lossy (90% of A's packets lost) and
// A's queue to B full, B's requests to A (answered from A's read
// goroutine) never stall A: C is never declared dead and every RPC from C
// to A succeeds.
func TestHostileHeadOfLine(t *testing.T) {
	c, a, peer, b, _ := fullQueue(t, 5*time.Second)
	var downs atomic.Int32
	a.OnSendFailure(func(addr string, err error) {
		if addr == peer.GetMyEndPoint() {
			downs.Add(1)
			t.Logf("A reports C failed: %v", err)
		}
	})

	// B keeps asking A for a command A has no handler for, while C calls A.
	var hdr [requestHeaderSize]byte
	var sent int
	deadline := time.Now().Add(3 * time.Duration(c.cfg.RetryTimeout) * time.Millisecond)
	var calls, failed int
	for time.Now().Before(deadline) {
		for range 5 {
			sent++
			appendRequestHeader(hdr[:0], uint64(sent), tableRPC, 999, 3000)
			b.SendMsg(context.Background(), a.self, kindRequest, hdr[:], nil, rudp.SendOptions{NoWait: true})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := peer.SendRPCWithContext(ctx, 5, a.GetMyEndPoint(), []byte("ping"))
		cancel()
		calls++
		if err != nil {
			failed++
			t.Logf("C's RPC to A: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("B sent %d requests; C made %d RPCs, %d failed; A's queue to B: %+v", sent, calls, failed, func() rudp.PeerStatus { s, _ := a.tr.Peer(b.LocalAddr()); return s }())
	if failed > 0 || downs.Load() > 0 {
		t.Fatalf("%d of C's %d RPCs to A failed; A reported C failed %d times", failed, calls, downs.Load())
	}
	if st, ok := a.tr.Peer(peer.self); !ok || !st.Established {
		t.Fatal("A lost its session with C")
	}
}

// TestHostileFullQueueHonoursContext: an RPC to a peer whose queue is full
// (and stays full: every packet to it is lost) gives up when its context
// or deadline ends, as a timeout, not when the session finally dies.
func TestHostileFullQueueHonoursContext(t *testing.T) {
	_, a, _, b, lc := fullQueue(t, 10*time.Second)
	lc.mu.Lock()
	lc.drop = 1
	lc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.SendRPCWithContext(ctx, 5, b.LocalAddr().String(), make([]byte, 32<<10))
	t.Logf("SendRPCWithContext (300 ms) on a full queue: %v after %v", err, time.Since(start))
	if !IsRequestTimeoutError(err) || IsSendError(err) {
		t.Errorf("SendRPCWithContext on a full queue: %v (want a timeout)", err)
	}
	// SendRPC's 3 s deadline is longer than A's retry timeout: with every
	// packet lost, A's session to B makes no progress and is declared dead
	// first (rudp's stall rule), so a send error is as right as a timeout.
	// What matters is that it does not wait past its deadline.
	start = time.Now()
	_, err = a.SendRPC(5, b.LocalAddr().String(), make([]byte, 32<<10))
	el := time.Since(start)
	t.Logf("SendRPC on a full queue: %v after %v", err, el)
	switch {
	case IsRequestTimeoutError(err) && !IsSendError(err):
	case IsSendError(err) && errors.Is(err, rudp.ErrPeerDown):
	default:
		t.Errorf("SendRPC on a full queue: %v (want a timeout, or the stalled session's send error)", err)
	}
	if el > DefaultRPCTimeout+2*time.Second {
		t.Errorf("SendRPC on a full queue returned after %v, past its %v deadline", el, DefaultRPCTimeout)
	}
}

// fullQueue makes a cluster of C and A (A's transport queues at most
// 64 KiB per peer) and a bare transport B (its retry timeout bRetry) that
// loses 90% of A's packets, and fills A's queue to B.
func fullQueue(t *testing.T, bRetry time.Duration) (*cluster, *Node, *Node, *rudp.Transport, *lossyConn) {
	c := newCluster(t, 1)
	a := c.add(withRudp(func(rc *rudp.Config) { rc.MaxQueued = 64 << 10 }))
	peer := c.add()
	c.waitListed(3)
	a.HandleRPC(5, func(d []byte, _ string) ([]byte, error) { return d, nil })

	// B: a bare transport on a lossy socket.
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	lc := &lossyConn{UDPConn: uc, rng: rand.New(rand.NewPCG(1, 2)), from: a.self}
	b, err := rudp.New(lc, rudp.Config{RetryInterval: 200 * time.Millisecond, RetryTimeout: bRetry, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	// Establish A->B, then make it lossy and fill A's queue to B.
	if err := a.Send(9, b.LocalAddr().String(), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		st, ok := a.tr.Peer(b.LocalAddr())
		return ok && st.Established && st.Queued == 0
	}, "A has a session with B")
	lc.mu.Lock()
	lc.drop = 0.9
	lc.mu.Unlock()
	stop := make(chan struct{})
	var fill sync.WaitGroup
	fill.Add(1)
	go func() {
		defer fill.Done()
		big := make([]byte, 16<<10)
		for i := 0; i < 400; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.Send(9, b.LocalAddr().String(), big); err != nil {
				t.Logf("fill: %v", err)
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); a.Shutdown(); fill.Wait() })
	eventually(t, 15*time.Second, func() bool {
		st, ok := a.tr.Peer(b.LocalAddr())
		return ok && st.Queued >= 48<<10
	}, "A's queue to B is full")

	return c, a, peer, b, lc
}
