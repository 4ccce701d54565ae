package rudp

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestSendLater: messages left to the flusher (SendOptions.Later) to
// several peers, in a burst, all arrive, in order per peer, exactly once.
// (That they share packets is measured by bench -suite xpubsub.)
func TestSendLater(t *testing.T) {
	const peers, count = 3, 500
	boxes := make([]*inbox, peers)
	recv := make([]*Transport, peers)
	for i := range recv {
		boxes[i] = newInbox()
		tr, err := Listen("127.0.0.1:0", boxes[i].config(Config{}))
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		recv[i] = tr
	}
	snd, err := Listen("127.0.0.1:0", newInbox().config(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	for i := range count {
		for _, r := range recv {
			if err := snd.SendMsg(context.Background(), r.LocalAddr(), 1, nil, fmt.Appendf(nil, "%d", i), SendOptions{Later: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, b := range boxes {
		if !b.waitFor(30*time.Second, func() bool { return len(b.msgs) >= count }) {
			t.Fatalf("peer %d got %d of %d", i, b.count(), count)
		}
		b.mu.Lock()
		for k, m := range b.msgs {
			if string(m.payload) != fmt.Sprint(k) || !m.reliable {
				b.mu.Unlock()
				t.Fatalf("peer %d: message %d is %q", i, k, m.payload)
			}
		}
		if len(b.msgs) != count {
			t.Errorf("peer %d: %d messages, want %d", i, len(b.msgs), count)
		}
		b.mu.Unlock()
	}
}
