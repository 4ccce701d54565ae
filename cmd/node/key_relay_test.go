package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/rudp"
)

// relay forwards UDP datagrams between one client (whoever sends to front)
// and a target (from back), records every datagram in both directions, and
// can send a copy with one bit flipped ahead of each original.
type relay struct {
	front, back net.PacketConn
	target      *net.UDPAddr
	client      atomic.Pointer[net.UDPAddr]
	flip        atomic.Bool

	mu                 sync.Mutex
	toTarget, toClient [][]byte
	flippedToTarget    int
	flippedToClient    int
	rng                *rand.Rand
	wg                 sync.WaitGroup
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{target: ta, rng: rand.New(rand.NewPCG(1, 2))}
	if r.front, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if r.back, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	r.wg.Add(2)
	go r.pump(r.front, r.back, true)
	go r.pump(r.back, r.front, false)
	t.Cleanup(func() {
		r.front.Close()
		r.back.Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() string { return r.front.LocalAddr().String() }

// pump reads from in and writes to the other side through out.
func (r *relay) pump(in, out net.PacketConn, toTarget bool) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := in.ReadFrom(buf)
		if err != nil {
			return
		}
		p := append([]byte(nil), buf[:n]...)
		var to net.Addr
		if toTarget {
			r.client.Store(from.(*net.UDPAddr))
			to = r.target
		} else {
			c := r.client.Load()
			if c == nil {
				continue
			}
			to = c
		}
		r.mu.Lock()
		if toTarget {
			r.toTarget = append(r.toTarget, p)
		} else {
			r.toClient = append(r.toClient, p)
		}
		var flipped []byte
		if r.flip.Load() {
			flipped = append([]byte(nil), p...)
			bit := r.rng.IntN(8 * len(p))
			flipped[bit/8] ^= 1 << (bit % 8)
			if toTarget {
				r.flippedToTarget++
			} else {
				r.flippedToClient++
			}
		}
		r.mu.Unlock()
		if flipped != nil {
			out.WriteTo(flipped, to)
		}
		out.WriteTo(p, to)
	}
}

// captured returns copies of what the relay saw so far.
func (r *relay) captured() (toTarget, toClient [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.toTarget...), append([][]byte(nil), r.toClient...)
}

// replay sends datagrams from conn to addr, a few at a time.
func replay(t *testing.T, conn net.PacketConn, to net.Addr, dgrams [][]byte) {
	t.Helper()
	for i, d := range dgrams {
		if _, err := conn.WriteTo(d, to); err != nil {
			t.Fatal(err)
		}
		if i%16 == 15 {
			time.Sleep(time.Millisecond) // pacing: no socket buffer overflow on a loaded machine
		}
	}
}

// guestRejected is rejected for an in-process node, from its collector.
func guestRejected(t *testing.T, g *mesh.Node) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(g.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		switch f.GetName() {
		case "marsmesh_transport_auth_failures_total", "marsmesh_transport_replays_total", "marsmesh_transport_bad_datagrams_total":
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestClusterKeyReplayAndBitFlip puts a UDP relay between a keyed guest
// (in the test process) and a keyed `node run` process. Every datagram the
// relay saw (handshake included) is replayed to the node from the relay's
// own socket (the session's address) and from a fresh socket, and to the
// guest: nothing is delivered twice, and the node counts each replayed
// datagram as a replay or an authentication failure. Then the relay sends
// a copy with one random bit flipped ahead of every datagram, both ways:
// the flipped copies are counted and dropped, and every message still
// arrives exactly once.
func TestClusterKeyReplayAndBitFlip(t *testing.T) {
	key := newKey(t)
	k, err := config.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet, Transport: rudp.Config{Keys: [][32]byte{k}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	marsPort := int(srv.Addr().Port())
	admin := freeAdmin(t)
	a := start(t, []string{"DIARKIS_MARS_PORT=" + strconv.Itoa(marsPort), "DIARKIS_PORT=0", "DIARKIS_MESH_KEY=" + key},
		"run", "-type", "game", "-admin", admin)
	addrA := a.joined(t)
	g := keyedGuest(t, marsPort, key)
	r := newRelay(t, addrA)

	sent := 0
	send := func(n int) {
		t.Helper()
		for i := range n {
			var err error
			if i%4 == 3 {
				err = g.USend(cmdCount, r.addr(), map[string]interface{}{"add": 1})
			} else {
				err = g.Send(cmdCount, r.addr(), map[string]interface{}{"add": 1})
			}
			if err != nil {
				t.Fatal(err)
			}
			sent++
			if i%5 == 0 {
				want := fmt.Sprintf("echo %d", sent)
				resp, err := g.SendRPC(cmdEcho, r.addr(), []byte(want))
				if err != nil || string(resp) != want {
					t.Fatalf("echo through the relay: %q, %v", resp, err)
				}
			}
		}
		eventually(t, 20*time.Second, fmt.Sprintf("node A counted %d messages", sent), func() bool {
			return handlerCounts(t, g, addrA).CounterMessages >= int64(sent)
		})
	}
	// exact checks the count after one more message through the relay:
	// anything replayed would have been counted before it.
	exact := func(what string) {
		t.Helper()
		send(1)
		if got := handlerCounts(t, g, addrA).CounterMessages; got != int64(sent) {
			t.Fatalf("%s: node A counted %d messages, %d were sent", what, got, sent)
		}
	}

	send(40)
	toA, toGuest := r.captured()
	if len(toA) < 20 || len(toGuest) < 10 {
		t.Fatalf("the relay saw only %d and %d datagrams", len(toA), len(toGuest))
	}

	// Replays to node A: from the session's own address, and from elsewhere.
	before := rejected(t, admin)
	other, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	replay(t, r.back, r.target, toA)
	replay(t, other, r.target, toA)
	eventually(t, 20*time.Second, fmt.Sprintf("node A refused the %d replayed datagrams", 2*len(toA)), func() bool {
		return rejected(t, admin)-before >= float64(2*len(toA))
	})
	// Replays to the guest, from the relay's front (the address it talks to).
	guestBefore := guestRejected(t, g)
	if c := r.client.Load(); c != nil {
		replay(t, r.front, c, toGuest)
	}
	eventually(t, 20*time.Second, fmt.Sprintf("the guest refused the %d replayed datagrams", len(toGuest)), func() bool {
		return guestRejected(t, g)-guestBefore >= float64(len(toGuest))
	})
	exact("after the replays")

	// Bit flips, both ways.
	before, guestBefore = rejected(t, admin), guestRejected(t, g)
	r.flip.Store(true)
	send(40)
	r.flip.Store(false)
	r.mu.Lock()
	flippedA, flippedG := r.flippedToTarget, r.flippedToClient
	r.mu.Unlock()
	eventually(t, 20*time.Second, fmt.Sprintf("node A dropped the %d flipped datagrams", flippedA), func() bool {
		return rejected(t, admin)-before >= float64(flippedA)
	})
	eventually(t, 20*time.Second, fmt.Sprintf("the guest dropped the %d flipped datagrams", flippedG), func() bool {
		return guestRejected(t, g)-guestBefore >= float64(flippedG)
	})
	exact("after the bit flips")
	t.Logf("replayed %d datagrams to node A twice and %d to the guest; flipped %d to A and %d to the guest; %d messages delivered once each",
		len(toA), len(toGuest), flippedA, flippedG, sent)

	// Nothing broken: the relayed session still answers.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := g.SendRPCWithContext(ctx, cmdEcho, r.addr(), []byte("still here")); err != nil || string(resp) != "still here" {
		t.Fatalf("echo after the attack: %q, %v", resp, err)
	}
	stopProc(t, a)
}
