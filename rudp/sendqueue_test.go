package rudp

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/kcp"
	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// drainQueue takes q's bytes in pieces of at most max and decodes them.
func drainQueue(t *testing.T, q *sendQueue, max int) (frames [][]byte, pieces int) {
	t.Helper()
	var d frameDecoder
	scratch := make([]byte, 0, max)
	for q.n > 0 {
		p := q.next(max, scratch)
		if len(p) == 0 || len(p) > max {
			t.Fatalf("piece of %d bytes (max %d)", len(p), max)
		}
		pieces++
		if err := d.feed(p, func(f frame, _ bool) { frames = append(frames, f.bytes()) }); err != nil {
			t.Fatal(err)
		}
	}
	return frames, pieces
}

func TestSendQueueBlock(t *testing.T) {
	var q sendQueue
	msg := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }
	for i := range 60 { // 3,900 bytes: one block
		q.appendFrame(1, 60, [][]byte{msg(i, 20), msg(i, 40)}, false)
	}
	if got := len(q.bufs) - q.head; got != 1 {
		t.Fatalf("60 small frames in %d gather entries, want 1 (adjacent in the block)", got)
	}
	blk := &q.blk[:1][0]
	frames, pieces := drainQueue(t, &q, 1000)
	if len(frames) != 60 || pieces != (60*65+999)/1000 {
		t.Fatalf("%d frames in %d pieces", len(frames), pieces)
	}
	for i, f := range frames {
		if len(f) != 60 || f[0] != byte(i) || f[59] != byte(i) {
			t.Fatalf("frame %d damaged", i)
		}
	}
	// Empty again: the block is reused.
	q.appendFrame(2, 3, [][]byte{[]byte("abc")}, true)
	if &q.blk[:1][0] != blk {
		t.Fatal("the block of an emptied queue was not reused")
	}
	// A slice pushed from elsewhere ends the open entry; a big frame has
	// its own allocation; order holds across all of them.
	q.push(appendFrame(nil, 3, 2, [][]byte{[]byte("xy")}, false))
	q.appendFrame(4, 1, [][]byte{[]byte("z")}, false)
	q.appendFrame(5, maxBlockFrame, [][]byte{msg(9, maxBlockFrame)}, false)
	q.appendFrame(6, 1, [][]byte{[]byte("w")}, false)
	if got := len(q.bufs) - q.head; got != 5 {
		t.Fatalf("%d gather entries, want 5", got)
	}
	frames, _ = drainQueue(t, &q, 1000)
	want := []string{"abc", "xy", "z", string(msg(9, maxBlockFrame)), "w"}
	if len(frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(frames), len(want))
	}
	for i, f := range frames {
		if string(f) != want[i] {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(f), len(want[i]))
		}
	}
	// The block grows for a frame that does not fit, and is dropped when
	// an empty queue is released.
	for range 200 {
		q.appendFrame(7, 100, [][]byte{msg(7, 100)}, false)
	}
	if cap(q.blk) > maxBlock {
		t.Fatalf("block of %d bytes, limit %d", cap(q.blk), maxBlock)
	}
	q.release()
	if q.blk == nil {
		t.Fatal("a non-empty queue released its block")
	}
	if frames, _ = drainQueue(t, &q, 1376); len(frames) != 200 {
		t.Fatalf("%d frames, want 200", len(frames))
	}
	q.release()
	if q.blk != nil {
		t.Fatal("an empty queue kept its block")
	}
}

// TestLaterSharesSegments: small messages enqueued for a later flush (a
// hot stream, a corked burst) share KCP segments and arrive in order,
// interleaved with messages that go straight to KCP; over the in-memory
// network and UDP.
func TestLaterSharesSegments(t *testing.T) {
	for _, net := range []string{"mem", "udp"} {
		t.Run(net, func(t *testing.T) {
			var a, b *Transport
			bIn := newInbox()
			if net == "mem" {
				n := faultnet.New(1)
				a, b = listenMem(t, n, Config{}), listenMem(t, n, bIn.config(Config{}))
			} else {
				a, b = listenUDP(t, Config{}), listenUDP(t, bIn.config(Config{}))
			}
			if err := a.Send(b.LocalAddr(), 1, []byte{0, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
			if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
				t.Fatal("first message did not arrive")
			}
			s := a.lookup(b.LocalAddr())
			const count = 1000
			s.mu.Lock()
			pushed := s.pushed
			for i := 1; i < count; i++ {
				p := binary.BigEndian.AppendUint32(nil, uint32(i))
				p = append(p, make([]byte, i%50)...)
				s.enqueueLocked(1, len(p), [][]byte{p}, false, i%100 != 0)
			}
			s.flushUnlock(kcp.IKCP_FLUSH_FULL, false)
			a.activate(s)
			if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == count }) {
				t.Fatalf("got %d of %d", bIn.count(), count)
			}
			s.mu.Lock()
			segs := s.pushed - pushed
			s.mu.Unlock()
			t.Logf("%d messages in %d segments", count-1, segs)
			if segs > count/10 {
				t.Fatalf("%d messages took %d segments", count-1, segs)
			}
			bIn.mu.Lock()
			defer bIn.mu.Unlock()
			for i, m := range bIn.msgs {
				if got := binary.BigEndian.Uint32(m.payload); got != uint32(i) || len(m.payload) != 4+i%50 && i > 0 {
					t.Fatalf("message %d arrived as %d (%d bytes)", i, got, len(m.payload))
				}
			}
		})
	}
}

// TestHotStreamInOrder: a tight loop of small sends (left to the flusher
// once hot) and larger ones in between arrives whole and in order, also
// over a network that loses, duplicates and reorders packets.
func TestHotStreamInOrder(t *testing.T) {
	for _, net := range []string{"mem", "mem-lossy", "udp"} {
		t.Run(net, func(t *testing.T) {
			var a, b *Transport
			bIn := newInbox()
			if net != "udp" {
				n := faultnet.New(2)
				if net == "mem-lossy" {
					n.SetFaults(faultnet.Faults{Loss: 0.05, Duplicate: 0.02, Reorder: 0.05})
				}
				a, b = listenMem(t, n, Config{}), listenMem(t, n, bIn.config(Config{}))
			} else {
				a, b = listenUDP(t, Config{}), listenUDP(t, bIn.config(Config{}))
			}
			const count = 5000
			for i := range count {
				size := 4 + i%64
				if i%500 == 0 {
					size = 3000 // bigger than a segment: straight to KCP
				}
				if err := a.Send(b.LocalAddr(), byte(i), patterned(i, size)); err != nil {
					t.Fatal(err)
				}
			}
			if !bIn.waitFor(20*time.Second, func() bool { return len(bIn.msgs) == count }) {
				t.Fatalf("got %d of %d", bIn.count(), count)
			}
			s := a.lookup(b.LocalAddr())
			s.mu.Lock()
			t.Logf("%d messages in %d segments", count, s.pushed)
			s.mu.Unlock()
			bIn.mu.Lock()
			defer bIn.mu.Unlock()
			for i, m := range bIn.msgs {
				size := 4 + i%64
				if i%500 == 0 {
					size = 3000
				}
				if m.kind != byte(i) || !bytes.Equal(m.payload, patterned(i, size)) {
					t.Fatalf("message %d damaged or out of order", i)
				}
			}
		})
	}
}
