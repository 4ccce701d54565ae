package mesh

import (
	"slices"
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
			reportTransport(b, b.N, a, srv)
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
			b.ResetTimer()
			el := concurrentRPCs(b, a, to, msg, 64, b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "rpc/s")
			reportTransport(b, b.N, a, srv)
		})
	}
}

// reportTransport adds the two nodes' datagrams and retransmissions per
// operation, and fails on datagrams that did not open or were replays.
func reportTransport(b *testing.B, ops int, nodes ...*Node) {
	var pkts, retx, bad uint64
	for _, n := range nodes {
		st := n.tr.Stats()
		pkts += st.PacketsOut
		retx += st.Retransmits
		bad += st.AuthFailures + st.Replays
	}
	b.ReportMetric(float64(pkts)/float64(ops), "pkts/rpc")
	b.ReportMetric(float64(retx)/float64(ops), "retx/rpc")
	if bad > 0 {
		b.Errorf("%d datagrams failed to open or were replays", bad)
	}
}

// BenchmarkRPCKeyInterleaved runs a keyless and a keyed pair side by
// side, alternating between them in blocks, so that load from elsewhere on
// the machine hits both alike: p50 of each, their ratio, and the c=64
// throughput of each and its ratio (ns/op: per single RPC of either pair,
// plus eight c=64 RPCs of each).
func BenchmarkRPCKeyInterleaved(b *testing.B) {
	modes := rpcKeyModes(b)
	type pair struct{ a, srv *Node }
	var pairs [2]pair
	for i, m := range modes {
		a, srv := keyPair(b, m.key)
		pairs[i] = pair{a, srv}
		for range 200 {
			if _, err := a.SendRPC(1, srv.GetMyEndPoint(), make([]byte, 64)); err != nil {
				b.Fatal(err)
			}
		}
	}
	msg := make([]byte, 64)
	const block = 50
	var lat [2][]time.Duration
	var el [2]time.Duration
	var calls [2]int
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		for i, p := range pairs {
			to := p.srv.GetMyEndPoint()
			for range block { // one at a time
				start := time.Now()
				if _, err := p.a.SendRPC(1, to, msg); err != nil {
					b.Fatal(err)
				}
				lat[i] = append(lat[i], time.Since(start))
			}
			el[i] += concurrentRPCs(b, p.a, to, msg, 64, 8*block) // 64 callers, 8 blocks' worth of calls
			calls[i] += 8 * block
		}
	}
	b.StopTimer()
	p50 := func(d []time.Duration) float64 {
		s := append([]time.Duration(nil), d...)
		slices.Sort(s)
		return float64(s[len(s)/2]) / 1e3
	}
	off, on := p50(lat[0]), p50(lat[1])
	b.ReportMetric(off, "p50-off-us")
	b.ReportMetric(on, "p50-on-us")
	b.ReportMetric(on/off, "p50-ratio")
	tOff, tOn := float64(calls[0])/el[0].Seconds(), float64(calls[1])/el[1].Seconds()
	b.ReportMetric(tOff, "c64-off-rpc/s")
	b.ReportMetric(tOn, "c64-on-rpc/s")
	b.ReportMetric(tOn/tOff, "c64-ratio")
	reportTransport(b, 9*b.N, pairs[1].a, pairs[1].srv)
}
