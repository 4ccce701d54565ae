package rudp

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// Unreliable reassembly under hostile input (issue 10, finding 5): the
// bytes it counts stand for the heap it really holds, one source cannot
// evict the others' partial messages, and eviction costs O(1).

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestHostileReassemblyAccounting: for partial messages of many shapes
// from many sources, the bytes counted are within 1.5x of the heap they
// hold, and stay under the limit.
func TestHostileReassemblyAccounting(t *testing.T) {
	full := bytes.Repeat([]byte{7}, MaxSize)
	shapes := []struct {
		name         string
		count, parts int
	}{
		{"two-part messages, first part only", 2, 1},
		{"many-part tables, one part each", 2000, 1},
		{"half-filled 20-part messages", 20, 10},
	}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			const limit = 16 << 20
			r := newReassembler(limit, time.Hour)
			before := heapInUse()
			id := uint32(0)
			for src := 0; r.held < limit*9/10 && src < 100_000; src++ {
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(src >> 16), byte(src >> 8), byte(src)}), 9)
				for range 4 {
					id++
					for i := range sh.parts {
						if _, _, err := r.add(from, fragment(id, i, sh.count, full), 0); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			after := heapInUse()
			msgs, held := r.pending()
			real := float64(after - before)
			ratio := real / float64(held)
			t.Logf("%d messages, %d bytes counted, %.0f bytes of heap: heap/counted %.2f", msgs, held, real, ratio)
			if held > limit {
				t.Fatalf("holding %d bytes, limit %d", held, limit)
			}
			if ratio > 1.5 || ratio < 1/1.5 {
				t.Fatalf("heap/counted = %.2f, want within 1.5x", ratio)
			}
			runtime.KeepAlive(r)
		})
	}
}

// TestHostileReassemblyPerSourceBudget: one source flooding partial
// messages evicts only its own; another source's partial message
// survives and completes.
func TestHostileReassemblyPerSourceBudget(t *testing.T) {
	const limit = 32 << 20 // the default
	r := newReassembler(limit, time.Hour)
	full := bytes.Repeat([]byte{1}, MaxSize)
	victim := netip.MustParseAddrPort("10.0.0.1:9")
	if _, _, err := r.add(victim, fragment(1, 0, 2, full), 0); err != nil {
		t.Fatal(err)
	}
	flood := netip.MustParseAddrPort("10.0.0.2:9")
	for id := range uint32(30_000) {
		r.add(flood, fragment(id, 0, 3, full), 0)
	}
	kind, msg, err := r.add(victim, fragment(1, 1, 2, []byte("end")), 0)
	if err != nil || msg == nil || kind != 9 {
		t.Fatalf("the victim's message was evicted by another source (kind %d, %d bytes, %v)", kind, len(msg), err)
	}
	if r.drops.Load() == 0 {
		t.Fatal("the flood evicted nothing of its own")
	}
	if held := r.srcs[flood].held; held > r.perSource || r.perSource >= limit/2 {
		t.Fatalf("the flooding source holds %d bytes, budget %d of %d", held, r.perSource, limit)
	}
}

// TestHostileReassemblyManySources: many sources together still respect
// the global limit, oldest first.
func TestHostileReassemblyManySources(t *testing.T) {
	const limit = 1 << 20
	r := newReassembler(limit, time.Hour)
	full := bytes.Repeat([]byte{1}, MaxSize)
	for i := range 5000 {
		from := netip.MustParseAddrPort(fmt.Sprintf("10.1.%d.%d:9", i/250, i%250+1))
		r.add(from, fragment(uint32(i), 0, 2, full), int64(i))
		if _, held := r.pending(); held > limit {
			t.Fatalf("holding %d bytes, limit %d", held, limit)
		}
	}
	msgs, _ := r.pending()
	if msgs == 0 || msgs >= 5000 {
		t.Fatalf("%d messages held", msgs)
	}
	// The newest survive.
	last := netip.MustParseAddrPort(fmt.Sprintf("10.1.%d.%d:9", 4999/250, 4999%250+1))
	if _, msg, _ := r.add(last, fragment(4999, 1, 2, []byte("x")), 5000); msg == nil {
		t.Fatal("the newest message was evicted")
	}
}

// BenchmarkReassemblyAtLimit adds fragments to a reassembler that is full,
// so each add evicts: the cost per add must not grow with what is held.
func BenchmarkReassemblyAtLimit(b *testing.B) {
	for _, limit := range []int{1 << 20, 32 << 20} {
		b.Run(fmt.Sprintf("limit=%dMiB", limit>>20), func(b *testing.B) {
			r := newReassembler(limit, time.Hour)
			full := bytes.Repeat([]byte{1}, MaxSize)
			id := uint32(0)
			for held := 0; held < limit*9/10; _, held = r.pending() {
				id++
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)}), 9)
				r.add(from, fragment(id, 0, 2, full), 0)
			}
			b.ResetTimer()
			for i := range b.N {
				id++
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)}), 9)
				r.add(from, fragment(id, 0, 2, full), int64(i))
			}
		})
	}
}
