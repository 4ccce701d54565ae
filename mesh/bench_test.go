package mesh

import (
	"github.com/marsmesh/marsmesh/internal/benchutil"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// Benchmarks run mesh beside raw rudp in the same run, on loopback:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./mesh

func benchClusterRoundTrip(b *testing.B, size int) {
	c := newCluster(b, 2)
	a, srv := c.nodes[0], c.nodes[1]
	srv.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	msg := make([]byte, size)
	to := srv.GetMyEndPoint()
	for range 200 {
		if _, err := a.SendRPC(1, to, msg); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := a.SendRPC(1, to, msg); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	benchutil.ReportLatency(b, lat)
}

func BenchmarkRPC(b *testing.B) {
	for _, size := range []int{64, 1024} {
		name := map[int]string{64: "64B", 1024: "1KiB"}[size]
		b.Run("rudp/"+name, func(b *testing.B) { rudpRoundTrip(b, size) })
		b.Run("mesh/"+name, func(b *testing.B) { benchClusterRoundTrip(b, size) })
	}
}

// rudpRoundTrip: the raw transport round trip with the reply sent from a
// fresh goroutine (as mesh runs handlers), the floor under SendRPC.
func rudpRoundTrip(b *testing.B, size int) {
	var server *rudp.Transport
	var err error
	server, err = rudp.Listen("127.0.0.1:0", rudp.Config{OnMessage: func(from netip.AddrPort, kind byte, p []byte, _ bool) {
		go server.Send(from, kind, p)
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	reply := make(chan struct{}, 1)
	client, err := rudp.Listen("127.0.0.1:0", rudp.Config{OnMessage: func(netip.AddrPort, byte, []byte, bool) {
		reply <- struct{}{}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	msg := make([]byte, size)
	to := server.LocalAddr()
	for range 200 {
		client.Send(to, 1, msg)
		<-reply
	}
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := client.Send(to, 1, msg); err != nil {
			b.Fatal(err)
		}
		<-reply
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	benchutil.ReportLatency(b, lat)
}

// BenchmarkRPCParallel: 64 concurrent callers on one node.
func BenchmarkRPCParallel(b *testing.B) {
	c := newCluster(b, 2)
	a, srv := c.nodes[0], c.nodes[1]
	srv.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	msg := make([]byte, 64)
	to := srv.GetMyEndPoint()
	if _, err := a.SendRPC(1, to, msg); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	el := concurrentRPCs(b, a, to, msg, 64, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "rpc/s")
}

// concurrentRPCs makes n SendRPC calls of command 1 from callers
// goroutines and returns how long they took.
func concurrentRPCs(b *testing.B, a *Node, to string, msg []byte, callers, n int) time.Duration {
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := a.SendRPC(1, to, msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkSend: one-way reliable messages, counted at the handler.
func BenchmarkSend(b *testing.B) {
	c := newCluster(b, 2)
	a, srv := c.nodes[0], c.nodes[1]
	var got atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	srv.SetCommandHandler(1, func([]byte, string) ([]byte, error) {
		if got.Add(1) == target {
			close(done)
		}
		return nil, nil
	})
	msg := make([]byte, 64)
	to := srv.GetMyEndPoint()
	b.SetBytes(64)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := a.Send(1, to, msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("delivered %d of %d", got.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkSendMany: fan-out to 16 in-process nodes with limit 4; an op is
// one SendMany, returning once every node acknowledged (through the tree).
func BenchmarkSendMany(b *testing.B) {
	c := newCluster(b, 17)
	var got atomic.Int64
	var addrs []string
	for _, n := range c.nodes[1:] {
		n.SetCommandHandler(1, func([]byte, string) ([]byte, error) { got.Add(1); return nil, nil })
		addrs = append(addrs, n.GetMyEndPoint())
	}
	msg := make([]byte, 64)
	sender := c.nodes[0]
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := sender.SendMany(1, addrs, msg, 4); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	benchutil.ReportLatency(b, lat)
}
