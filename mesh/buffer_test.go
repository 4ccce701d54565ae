package mesh

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// TestSendIntervalStuckPeer: with sendInterval set, a peer whose queue
// stays full (it stopped reading: its session is paused) does not hold back
// the buffered messages of another peer, and what was held for it arrives,
// in order, once it reads again.
func TestSendIntervalStuckPeer(t *testing.T) {
	c := newCluster(t, 2)
	stuck, other := c.nodes[0], c.nodes[1]
	cfg := c.cfg
	cfg.SendInterval = 20
	cb := &cluster{t: t, mars: c.mars, cfg: cfg}
	a := cb.add(withRudp(func(rc *rudp.Config) { rc.MaxQueued = 64 << 10 }))
	t.Cleanup(func() { a.Shutdown() })

	var mu sync.Mutex
	var toStuck [][]byte
	stuck.SetCommandHandler(9, func(p []byte, _ string) ([]byte, error) {
		mu.Lock()
		toStuck = append(toStuck, p)
		mu.Unlock()
		return nil, nil
	})
	got := make(chan byte, 16)
	other.SetCommandHandler(10, func(p []byte, _ string) ([]byte, error) { got <- p[0]; return nil, nil })

	// A session from A to the stuck node, then the stuck node stops reading
	// it and A's queue to it fills past MaxQueued.
	if err := a.Send(9, stuck.GetMyEndPoint(), []byte("first")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(toStuck) == 1 }, "the first message arrives")
	resume := jamQueue(t, a, stuck)
	if err := a.Send(9, stuck.GetMyEndPoint(), []byte("held")); err != nil {
		t.Fatal(err)
	}

	// The other peer's buffered messages still go out, round after round.
	for i := range 3 {
		if err := a.Send(10, other.GetMyEndPoint(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-got:
			if b != byte(i) {
				t.Fatalf("the other peer got message %d, want %d", b, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d to the other peer is held back by the stuck peer", i)
		}
	}

	// The stuck node reads again: what was held for it arrives, in order.
	resume()
	eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(toStuck) == 3 }, "the held messages arrive")
	mu.Lock()
	defer mu.Unlock()
	if len(toStuck[1]) != jamSize || string(toStuck[2]) != "held" {
		t.Fatalf("the stuck node got %d and %q after resuming, want %d bytes then \"held\"", len(toStuck[1]), toStuck[2], jamSize)
	}
}

// jamSize is what jamQueue queues: far past a 64 KiB MaxQueued, and more
// than the stuck node's receive window takes.
const jamSize = 4 << 20

// jamQueue fills a's queue to stuck (a has a session with it, and a
// MaxQueued of 64 KiB): stuck stops reading a's session and a queues
// jamSize bytes of command 9 to it. The returned func (also run at
// cleanup, before a shuts down) makes stuck read again.
func jamQueue(t *testing.T, a, stuck *Node) (resume func()) {
	t.Helper()
	stuck.tr.Pause(a.self)
	var once sync.Once
	resume = func() { once.Do(func() { stuck.tr.Resume(a.self) }) }
	t.Cleanup(resume)
	if err := a.tr.SendMsg(context.Background(), stuck.self, kindCommand, []byte{0, 9}, make([]byte, jamSize), rudp.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() bool {
		st, ok := a.tr.Peer(stuck.self)
		return ok && st.Queued > 64<<10
	}, "A's queue to the stuck node is full")
	return resume
}

// TestSendBufferHeldBound: what the flusher keeps for a peer whose queue
// stays full is bounded: past maxHeldBytes the oldest is dropped, counted
// and reported, and the flush at close gives up on the rest after its
// wait, so closing never hangs on a stuck peer.
func TestSendBufferHeldBound(t *testing.T) {
	c := newCluster(t, 1)
	stuck := c.nodes[0]
	a := c.add(withRudp(func(rc *rudp.Config) { rc.MaxQueued = 64 << 10 }))
	stuck.SetCommandHandler(9, func([]byte, string) ([]byte, error) { return nil, nil })
	if err := a.Send(9, stuck.GetMyEndPoint(), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		st, ok := a.tr.Peer(stuck.self)
		return ok && st.Established && st.Queued == 0
	}, "A has a session with the stuck node")
	jamQueue(t, a, stuck)

	var mu sync.Mutex
	var reports []error
	b := newSendBuffer(a.tr, a.life.ctx, func(_ netip.AddrPort, err error) {
		mu.Lock()
		reports = append(reports, err)
		mu.Unlock()
	}, time.Hour, 100*time.Millisecond) // rounds run by hand
	const msgSize, perRound, rounds = 10 << 10, 20, 8 // 200 KiB a round
	for range rounds {
		for range perRound {
			if err := b.add(stuck.self, kindCommand, []byte{0, 9}, make([]byte, msgSize), true, nil); err != nil {
				t.Fatal(err)
			}
		}
		b.flushRound()
	}
	b.mu.Lock()
	held := b.peers[stuck.self].heldBytes
	b.mu.Unlock()
	dropped := b.drops()
	if held > maxHeldBytes || dropped == 0 {
		t.Fatalf("after %d rounds to a full queue: %d bytes held (limit %d), %d messages dropped", rounds, held, maxHeldBytes, dropped)
	}
	mu.Lock()
	if len(reports) == 0 || !errors.Is(reports[0], rudp.ErrWouldBlock) {
		t.Fatalf("drops reported as %v, want errors wrapping rudp.ErrWouldBlock", reports)
	}
	mu.Unlock()

	b.close() // the queue stays full: the rest is dropped after the final wait
	if got := b.drops(); got != rounds*perRound {
		t.Fatalf("%d of %d messages counted dropped after close", got, rounds*perRound)
	}
}
