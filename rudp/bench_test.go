package rudp

import (
	"github.com/marsmesh/marsmesh/internal/benchutil"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// The benchmarks run rudp and raw kcp-go side by side on loopback with the
// same KCP tuning (nodelay, 10 ms interval, fast resend 2, no congestion
// window, 1024-segment windows, immediate acks), so their ratio is
// measured in one run:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./rudp

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

// kcpPair returns a client session and the server side of a raw kcp-go
// connection on loopback, both tuned like rudp.
func kcpPair(b *testing.B) (*kcp.UDPSession, *kcp.UDPSession, func()) {
	l, err := kcp.ListenWithOptions("127.0.0.1:0", nil, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	tune := func(s *kcp.UDPSession) {
		s.SetNoDelay(1, 10, 2, 1)
		s.SetWindowSize(1024, 1024)
		s.SetACKNoDelay(true)
		s.SetMtu(MaxPacketSize)
	}
	accepted := make(chan *kcp.UDPSession, 1)
	go func() {
		s, err := l.AcceptKCP()
		if err != nil {
			close(accepted)
			return
		}
		tune(s)
		accepted <- s
	}()
	c, err := kcp.DialWithOptions(l.Addr().String(), nil, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	tune(c)
	c.Write([]byte{0}) // the server learns of the session on the first packet
	s := <-accepted
	buf := make([]byte, 16)
	s.Read(buf)
	return c, s, func() { c.Close(); s.Close(); l.Close() }
}

func benchKCPRoundTrip(b *testing.B, size int) {
	c, s, closeAll := kcpPair(b)
	defer closeAll()
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, size)
	buf := make([]byte, 1<<20)
	for range 100 {
		c.Write(msg)
		c.Read(buf)
	}
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	benchutil.ReportLatency(b, lat)
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{64, 1024} {
		name := map[int]string{64: "64B", 1024: "1KiB"}[size]
		b.Run("rudp/"+name, func(b *testing.B) { benchRudpRoundTrip(b, size) })
		b.Run("kcp-go/"+name, func(b *testing.B) { benchKCPRoundTrip(b, size) })
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

func benchKCPOneWay(b *testing.B, size int) {
	c, s, closeAll := kcpPair(b)
	defer closeAll()
	done := make(chan struct{})
	go func() {
		// kcp-go sends a Write larger than one segment as several KCP
		// messages, so count bytes, not reads.
		defer close(done)
		buf := make([]byte, 1<<20)
		for want := b.N * size; want > 0; {
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			want -= n
		}
	}()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatal("kcp-go receiver stalled")
	}
	b.StopTimer()
	reportThroughput(b, size, time.Since(start))
}

func BenchmarkOneWay(b *testing.B) {
	for _, size := range []int{64, 16 << 10} {
		name := map[int]string{64: "64B", 16 << 10: "16KiB"}[size]
		b.Run("rudp/"+name, func(b *testing.B) { benchRudpOneWay(b, size) })
		b.Run("kcp-go/"+name, func(b *testing.B) { benchKCPOneWay(b, size) })
	}
}
