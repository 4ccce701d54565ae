package mesh

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/benchutil"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// SendRPC with and without a cluster key, in one run (issue 11's cost
// goal: with a key, p50 within 1.15x and c=64 throughput >= 0.85x):
//
//	go test -run '^$' -bench 'RPCKey' -benchmem -count 5 ./mesh

// keyPair starts a MARS and two nodes, all with the key k (none if zero).
func keyPair(b *testing.B, k [32]byte) (a, srv *Node) {
	var keys [][32]byte
	if k != ([32]byte{}) {
		keys = [][32]byte{k}
	}
	m, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet, Transport: rudp.Config{Keys: keys}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	cfg := testConfig(m.Addr().Port())
	if keys != nil {
		cfg.MeshKey = config.EncodeKey(k)
	}
	var nodes [2]*Node
	for i := range nodes {
		n, err := New(cfg, WithLogger(quiet), WithSyncInterval(200*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Shutdown() })
		select {
		case <-n.Ready():
		case <-time.After(10 * time.Second):
			b.Fatal("node did not sync with MARS")
		}
		nodes[i] = n
	}
	nodes[1].HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	return nodes[0], nodes[1]
}

func rpcKeyModes(b *testing.B) []struct {
	name string
	key  [32]byte
} {
	k, err := rudp.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		key  [32]byte
	}{{"key=off", [32]byte{}}, {"key=on", k}}
}

// BenchmarkRPCKey: one 64-byte SendRPC at a time.
func BenchmarkRPCKey(b *testing.B) {
	for _, m := range rpcKeyModes(b) {
		b.Run(m.name, func(b *testing.B) {
			a, srv := keyPair(b, m.key)
			msg := make([]byte, 64)
			to := srv.GetMyEndPoint()
			for range 200 {
				if _, err := a.SendRPC(1, to, msg); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
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
		})
	}
}

// BenchmarkRPCParallelKey: 64 concurrent callers of 64-byte SendRPC.
func BenchmarkRPCParallelKey(b *testing.B) {
	for _, m := range rpcKeyModes(b) {
		b.Run(m.name, func(b *testing.B) {
			a, srv := keyPair(b, m.key)
			msg := make([]byte, 64)
			to := srv.GetMyEndPoint()
			if _, err := a.SendRPC(1, to, msg); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := a.SendRPC(1, to, msg); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rpc/s")
		})
	}
}
