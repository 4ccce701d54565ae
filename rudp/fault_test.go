package rudp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// mixedPayload builds message i of the lossy-network test: its index, then
// filler, with sizes from 0 to a few segments.
func mixedPayload(rng *rand.Rand, i int) []byte {
	var n int
	switch r := rng.IntN(100); {
	case r < 60:
		n = 8 + rng.IntN(120)
	case r < 90:
		n = 8 + rng.IntN(1400)
	default:
		n = 8 + rng.IntN(6000)
	}
	p := make([]byte, n)
	binary.BigEndian.PutUint64(p, uint64(i))
	for j := 8; j < n; j++ {
		p[j] = byte(i + j)
	}
	return p
}

// TestLossyNetwork sends 100,000 reliable messages of mixed sizes both
// ways over a network losing 20%, duplicating 5% and reordering 5% of
// packets, and checks each arrives once, intact, in order.
func TestLossyNetwork(t *testing.T) {
	total := 100_000
	if testing.Short() {
		total = 10_000
	}
	n := faultnet.New(1)
	n.SetFaults(faultnet.Faults{Loss: 0.20, Duplicate: 0.05, Reorder: 0.05})
	aIn, bIn := newInbox(), newInbox()
	a := listenMem(t, n, aIn.config(Config{}))
	b := listenMem(t, n, bIn.config(Config{}))

	half := total / 2
	start := time.Now()
	send := func(from, to *Transport, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 0))
		for i := range half {
			if err := from.Send(to.LocalAddr(), 7, mixedPayload(rng, i)); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}
	done := make(chan struct{})
	go func() { send(b, a, 2); close(done) }()
	send(a, b, 1)
	<-done

	check := func(name string, in *inbox, seed uint64) {
		if !in.waitFor(120*time.Second, func() bool { return len(in.msgs) >= half }) {
			var reasons []string
			for _, x := range []*inbox{aIn, bIn} {
				x.mu.Lock()
				for _, d := range x.downs {
					reasons = append(reasons, fmt.Sprintf("%s at %v: %v", d.addr, d.at.Sub(start).Round(time.Millisecond), d.err))
				}
				x.mu.Unlock()
			}
			t.Fatalf("%s: got %d of %d messages (net: sent %d dropped %d dup %d reordered %d; sessions ended: %v)", name,
				in.count(), half, n.Sent.Load(), n.Dropped.Load(), n.Duplicated.Load(), n.Reordered.Load(), reasons)
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		in.mu.Lock()
		defer in.mu.Unlock()
		if len(in.msgs) != half {
			t.Fatalf("%s: got %d messages, want %d", name, len(in.msgs), half)
		}
		for i, m := range in.msgs {
			if want := mixedPayload(rng, i); !bytes.Equal(m.payload, want) {
				t.Fatalf("%s: message %d is wrong: %d bytes (index %d), want %d bytes", name, i,
					len(m.payload), binary.BigEndian.Uint64(append(m.payload, make([]byte, 8)...)), len(want))
			}
		}
	}
	check("a->b", bIn, 1)
	check("b->a", aIn, 2)
	t.Logf("network: sent %d, dropped %d, duplicated %d, reordered %d",
		n.Sent.Load(), n.Dropped.Load(), n.Duplicated.Load(), n.Reordered.Load())
}
