package rudp

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/benchutil"
)

// The benchmarks run rudp on loopback in one process:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./rudp
//
// rudp beside raw kcp-go (and gRPC, NATS, raw UDP), in one process and
// across processes, is measured by the bench module (../bench).

func benchRudpRoundTrip(b *testing.B, size int) {
	server, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	server.cfg.OnMessage = func(from netip.AddrPort, kind byte, p []byte, _ bool) {
		server.Send(from, kind, p)
	}
	reply := make(chan struct{}, 1)
	client, err := Listen("127.0.0.1:0", Config{OnMessage: func(netip.AddrPort, byte, []byte, bool) {
		reply <- struct{}{}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	msg := make([]byte, size)
	to := server.LocalAddr()
	for range 100 { // handshake and warm-up
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

func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{64, 1024} {
		name := map[int]string{64: "64B", 1024: "1KiB"}[size]
		b.Run("rudp/"+name, func(b *testing.B) { benchRudpRoundTrip(b, size) })
	}
}

func reportThroughput(b *testing.B, size int, el time.Duration) {
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)*float64(size)/el.Seconds()/1e6, "MB/s")
}

func benchRudpOneWay(b *testing.B, size int) {
	var got atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	server, err := Listen("127.0.0.1:0", Config{OnMessage: func(netip.AddrPort, byte, []byte, bool) {
		if got.Add(1) == target {
			close(done)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	client, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	msg := make([]byte, size)
	to := server.LocalAddr()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := client.Send(to, 1, msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatalf("received %d of %d", got.Load(), b.N)
	}
	b.StopTimer()
	reportThroughput(b, size, time.Since(start))
}

func BenchmarkOneWay(b *testing.B) {
	for _, size := range []int{64, 16 << 10} {
		name := map[int]string{64: "64B", 16 << 10: "16KiB"}[size]
		b.Run("rudp/"+name, func(b *testing.B) { benchRudpOneWay(b, size) })
	}
}
