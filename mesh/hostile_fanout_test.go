package mesh

import (
	"encoding/binary"
	"math"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// Hostile: a fan-out memory bomb. A peer the relay never heard of sends one
// reliable fan-out frame of 1 MiB whose share lists 1,000 forged heads,
// with the largest deadline the wire can carry.

// attacker is a bare rudp transport on loopback that records what it gets.
type attacker struct {
	tr   *rudp.Transport
	acks chan []byte
}

func newAttacker(t *testing.T) *attacker {
	t.Helper()
	a := &attacker{acks: make(chan []byte, 16)}
	tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{
		RetryInterval: 200 * time.Millisecond, RetryTimeout: time.Second, Logger: quiet,
		OnMessage: func(_ netip.AddrPort, kind byte, p []byte, _ bool) {
			if kind == kindFanoutAck {
				select {
				case a.acks <- p:
				default:
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a.tr = tr
	t.Cleanup(func() { tr.Close() })
	return a
}

// liveHeap is the heap in use after two full collections (the second
// empties the sync.Pools the first moved to their victim caches).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestHostileFanoutMemoryBomb: the relay relays to no forged head (its
// MARS view lists none of them), copies nothing per head, answers at once
// with every head refused, and its heap grows by at most 2 MiB.
func TestHostileFanoutMemoryBomb(t *testing.T) {
	c := newCluster(t, 1)
	relay := c.nodes[0]
	var handled atomic.Int32
	relay.SetCommandHandler(77, func([]byte, string) ([]byte, error) { handled.Add(1); return nil, nil })
	at := newAttacker(t)

	const heads = 1000
	share := make([]netip.AddrPort, heads)
	for i := range share {
		share[i] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), uint16(20000+i))
	}
	m := &fanMsg{id: 0xb0b, cmd: 77, flags: fanReliable, limit: heads, origin: at.tr.LocalAddr()}
	hdr := fanoutHeader(m, share)
	binary.BigEndian.PutUint32(hdr[13:], math.MaxUint32) // the largest deadline
	payload := make([]byte, 1<<20)

	base := liveHeap()
	sent := make(chan error, 1)
	if err := at.tr.SendTracked(relay.self, kindFanout, hdr, payload, func(err error) { sent <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("the frame was not delivered: %v", err)
	}
	// Watch the relay's heap while it works on the frame.
	var peak uint64
	var ack []byte
	watch := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(watch) || ack == nil || handled.Load() == 0 {
		if h := liveHeap(); h > peak {
			peak = h
		}
		select {
		case ack = <-at.acks:
		default:
		}
		if time.Since(watch) > 15*time.Second {
			t.Fatalf("no fan-out ack (%v) or no delivery (%d) after 15 s", ack != nil, handled.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	grew := int64(peak) - int64(base)
	t.Logf("heap %d -> peak %d: grew %d KiB", base, peak, grew/1024)
	if grew > 2<<20 {
		t.Errorf("the relay's heap grew by %d KiB for one 1 MiB frame (limit 2048 KiB)", grew/1024)
	}
	id, failed, refused, err := parseFanoutAck(ack)
	if err != nil || id != m.id || len(failed) != 0 || len(refused) != heads {
		t.Errorf("ack: id %#x, %d failed, %d refused, %v (want every head refused)", id, len(failed), len(refused), err)
	}
	if got := len(relay.tr.Peers()); got > 2 {
		t.Errorf("the relay dialed forged heads: %d peers", got)
	}
	if handled.Load() != 1 {
		t.Errorf("delivered %d times, want once", handled.Load())
	}
}

// TestFanoutDeadlineCapped: a frame's deadline is capped at fanoutTimeout.
func TestFanoutDeadlineCapped(t *testing.T) {
	m := &fanMsg{id: 1, cmd: 1, flags: fanReliable, limit: 1, origin: netip.MustParseAddrPort("127.0.0.1:1")}
	hdr := fanoutHeader(m, nil)
	binary.BigEndian.PutUint32(hdr[13:], math.MaxUint32)
	got, _, err := parseFanout(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(got.deadline); left > fanoutTimeout {
		t.Fatalf("a 0xffffffff ms deadline leaves %v (cap %v)", left, fanoutTimeout)
	}
}
