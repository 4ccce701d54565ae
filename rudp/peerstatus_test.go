package rudp

import (
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// TestPeerStatusRTTAndRetransmits: over a link with 20 ms of delay each
// way and some loss, Peer reports a smoothed RTT near 40 ms and counts the
// session's retransmissions, which the transport's total includes.
func TestPeerStatusRTTAndRetransmits(t *testing.T) {
	n := faultnet.New(7)
	n.SetFaults(faultnet.Faults{Delay: 20 * time.Millisecond, Loss: 0.1})
	bIn := newInbox()
	a := listenMem(t, n, Config{})
	b := listenMem(t, n, bIn.config(Config{}))
	const total = 300
	for i := range total {
		if err := a.Send(b.LocalAddr(), 1, make([]byte, 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	if !bIn.waitFor(60*time.Second, func() bool { return len(bIn.msgs) == total }) {
		t.Fatalf("got %d of %d messages", bIn.count(), total)
	}
	st, ok := a.Peer(b.LocalAddr())
	if !ok || !st.Established {
		t.Fatalf("no established session: %+v", st)
	}
	if st.RTT < 30*time.Millisecond || st.RTT > 2*time.Second {
		t.Errorf("RTT %v, want about 40 ms", st.RTT)
	}
	if st.Retransmits == 0 || st.Retransmits > a.Stats().Retransmits {
		t.Errorf("session retransmits %d, transport total %d: want 0 < session <= total", st.Retransmits, a.Stats().Retransmits)
	}
	if st, _ := b.Peer(a.LocalAddr()); st.Retransmits > b.Stats().Retransmits {
		t.Errorf("receiver: session retransmits %d above the transport's %d", st.Retransmits, b.Stats().Retransmits)
	}
}
