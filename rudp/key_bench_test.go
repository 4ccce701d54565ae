package rudp

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/benchutil"
)

// Cluster keys on and off, in one run:
//
//	go test -run '^$' -bench 'Key' -benchmem -count 5 ./rudp

var keyModes = []struct {
	name string
	keys func(b *testing.B) [][32]byte
}{
	{"key=off", func(*testing.B) [][32]byte { return nil }},
	{"key=on", func(b *testing.B) [][32]byte { return [][32]byte{testKey(b)} }},
}

// echoPair is a client and a server that echoes every message back.
func echoPair(b *testing.B, keys [][32]byte, onReply func(p []byte)) (client, server *Transport) {
	server, err := Listen("127.0.0.1:0", Config{Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	server.cfg.OnMessage = func(from netip.AddrPort, kind byte, p []byte, _ bool) {
		server.Send(from, kind, p)
	}
	client, err = Listen("127.0.0.1:0", Config{Keys: keys, OnMessage: func(_ netip.AddrPort, _ byte, p []byte, _ bool) {
		onReply(p)
	}})
	if err != nil {
		server.Close()
		b.Fatal(err)
	}
	return client, server
}

// BenchmarkKeyRoundTrip: one request (64 B or 64 KiB) and its echo at a
// time.
func BenchmarkKeyRoundTrip(b *testing.B) {
	for _, size := range []int{64, 64 << 10} {
		for _, m := range keyModes {
			b.Run(map[int]string{64: "64B", 64 << 10: "64KiB"}[size]+"/"+m.name, func(b *testing.B) {
				reply := make(chan struct{}, 1)
				client, server := echoPair(b, m.keys(b), func([]byte) { reply <- struct{}{} })
				defer server.Close()
				defer client.Close()
				msg := make([]byte, size)
				to := server.LocalAddr()
				for range 100 {
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
			})
		}
	}
}

// BenchmarkKeyParallel: 64 callers, each with one 64-byte request in
// flight at a time (the c=64 RPC shape); msgs/s is round trips per second.
func BenchmarkKeyParallel(b *testing.B) {
	const callers = 64
	for _, m := range keyModes {
		b.Run(m.name, func(b *testing.B) {
			replies := make([]chan struct{}, callers)
			for i := range replies {
				replies[i] = make(chan struct{}, 1)
			}
			client, server := echoPair(b, m.keys(b), func(p []byte) {
				replies[binary.BigEndian.Uint16(p)] <- struct{}{}
			})
			defer server.Close()
			defer client.Close()
			to := server.LocalAddr()
			run := func(n int) {
				var wg sync.WaitGroup
				for c := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						msg := make([]byte, 64)
						binary.BigEndian.PutUint16(msg, uint16(c))
						for i := c; i < n; i += callers {
							client.Send(to, 1, msg)
							<-replies[c]
						}
					}()
				}
				wg.Wait()
			}
			run(10 * callers)
			b.ResetTimer()
			start := time.Now()
			run(b.N)
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			cs, ss := client.Stats(), server.Stats()
			b.ReportMetric(float64(cs.PacketsOut+ss.PacketsOut)/float64(b.N), "pkts/op")
			b.ReportMetric(float64(cs.Retransmits+ss.Retransmits)/float64(b.N), "retx/op")
			if bad := cs.AuthFailures + ss.AuthFailures + cs.Replays + ss.Replays; bad > 0 {
				b.Errorf("%d datagrams failed to open or were replays", bad)
			}
		})
	}
}

// BenchmarkKeySeal: sealing and opening one session packet.
func BenchmarkKeySeal(b *testing.B) {
	for _, size := range []int{64, 1375} {
		b.Run(map[int]string{64: "64B", 1375: "full"}[size], func(b *testing.B) {
			me := hsSide{inc: 1, tok: 2, eph: make([]byte, 32)}
			peer := hsSide{inc: 3, tok: 4, eph: make([]byte, 32)}
			tx := newSessCrypto(make([]byte, 32), me, peer)
			rx := newSessCrypto(make([]byte, 32), peer, me)
			buf := make([]byte, sealHeader+size, MaxPacketSize+64)
			var n1, n2 [12]byte
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for range b.N {
				p := tx.seal(buf[:sealHeader+size], &n1)
				if _, ok, _ := rx.open(p, &n2); !ok {
					b.Fatal("open failed")
				}
			}
		})
	}
}

// BenchmarkKeyInterleaved: a keyless and a keyed echo pair in one run,
// alternating in blocks (50 round trips one at a time, then 400 with 64
// callers) so that load from elsewhere hits both alike.
func BenchmarkKeyInterleaved(b *testing.B) {
	const callers, block = 64, 50
	type pair struct {
		client, server *Transport
		replies        []chan struct{}
	}
	var pairs [2]*pair
	for i, m := range keyModes {
		p := &pair{replies: make([]chan struct{}, callers)}
		for c := range p.replies {
			p.replies[c] = make(chan struct{}, 1)
		}
		p.client, p.server = echoPair(b, m.keys(b), func(msg []byte) {
			p.replies[binary.BigEndian.Uint16(msg)] <- struct{}{}
		})
		defer p.server.Close()
		defer p.client.Close()
		pairs[i] = p
	}
	var lat [2][]time.Duration
	var el [2]time.Duration
	var calls [2]int
	run := func(p *pair, c, n int) {
		msg := make([]byte, 64)
		binary.BigEndian.PutUint16(msg, uint16(c))
		to := p.server.LocalAddr()
		for range n {
			p.client.Send(to, 1, msg)
			<-p.replies[c]
		}
	}
	for _, p := range pairs {
		run(p, 0, 100)
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		for i, p := range pairs {
			msg := make([]byte, 64)
			to := p.server.LocalAddr()
			for range block {
				start := time.Now()
				p.client.Send(to, 1, msg)
				<-p.replies[0]
				lat[i] = append(lat[i], time.Since(start))
			}
			start := time.Now()
			var wg sync.WaitGroup
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					run(p, c, 8*block/callers)
				}()
			}
			wg.Wait()
			el[i] += time.Since(start)
			calls[i] += callers * (8 * block / callers)
		}
	}
	b.StopTimer()
	p50 := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2]) / 1e3
	}
	off, on := p50(lat[0]), p50(lat[1])
	b.ReportMetric(off, "p50-off-us")
	b.ReportMetric(on, "p50-on-us")
	b.ReportMetric(on/off, "p50-ratio")
	tOff, tOn := float64(calls[0])/el[0].Seconds(), float64(calls[1])/el[1].Seconds()
	b.ReportMetric(tOff, "c64-off-msgs/s")
	b.ReportMetric(tOn, "c64-on-msgs/s")
	b.ReportMetric(tOn/tOff, "c64-ratio")
}
