package rudp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// Half-open sessions (issue 10, finding 0): when one side ends a session
// the other still holds, a new dial must give both sides a new session
// quickly, never pair fresh KCP state with stale state.

// talkAgain sends tagged messages both ways until each side has received
// one sent after the call, and returns how long that took.
func talkAgain(t *testing.T, a *Transport, aIn *inbox, b *Transport, bIn *inbox, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tag := []byte("again-" + start.Format(time.RFC3339Nano))
	has := func(in *inbox) bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		for _, m := range in.msgs {
			if bytes.Equal(m.payload, tag) {
				return true
			}
		}
		return false
	}
	for time.Since(start) < within {
		a.Send(b.LocalAddr(), 1, tag)
		b.Send(a.LocalAddr(), 1, tag)
		if has(aIn) && has(bIn) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no traffic both ways within %v after the fault (a has %d messages, b %d; a's peer %v, b's %v)",
		within, aIn.count(), bIn.count(), peerOf(a, b.LocalAddr()), peerOf(b, a.LocalAddr()))
	return 0
}

func peerOf(t *Transport, addr netip.AddrPort) any {
	st, ok := t.Peer(addr)
	if !ok {
		return "none"
	}
	return st
}

func halfOpenPair(t *testing.T, seed uint64) (*faultnet.Network, *Transport, *inbox, *Transport, *inbox, *faultnet.Conn) {
	n := faultnet.New(seed)
	aIn, vIn := newInbox(), newInbox()
	a := listenMem(t, n, aIn.config(fastConfig()))
	vc, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(vc, withSuiteKey(vIn.config(fastConfig())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	talkAgain(t, a, aIn, v, vIn, 5*time.Second)
	return n, a, aIn, v, vIn, vc
}

// TestHostileHalfOpenOneWayLoss: V->A drops everything for 1.5x
// RetryTimeout while both sides keep sending; A times the session out.
// Afterwards traffic flows both ways again within about RetryTimeout.
func TestHostileHalfOpenOneWayLoss(t *testing.T) {
	for round := range 3 {
		n, a, aIn, v, vIn, _ := halfOpenPair(t, uint64(100+round))
		n.SetLinkFaults(v.LocalAddr(), a.LocalAddr(), faultnet.Faults{Loss: 1})
		stop := time.Now().Add(testTimeout * 3 / 2)
		for time.Now().Before(stop) {
			a.Send(v.LocalAddr(), 2, []byte("during"))
			v.Send(a.LocalAddr(), 2, []byte("during"))
			time.Sleep(20 * time.Millisecond)
		}
		n.SetLinkFaults(v.LocalAddr(), a.LocalAddr(), faultnet.Faults{})
		took := talkAgain(t, a, aIn, v, vIn, 20*testTimeout)
		t.Logf("round %d: traffic both ways again %v after the loss ended", round, took)
	}
}

// TestHostileHalfOpenFrozenPeer: V stops reading its socket for 2x
// RetryTimeout (as under SIGSTOP), then goes on.
func TestHostileHalfOpenFrozenPeer(t *testing.T) {
	for round := range 3 {
		_, a, aIn, v, vIn, vc := halfOpenPair(t, uint64(200+round))
		vc.Freeze()
		stop := time.Now().Add(2 * testTimeout)
		for time.Now().Before(stop) {
			a.Send(v.LocalAddr(), 2, []byte("during"))
			time.Sleep(20 * time.Millisecond)
		}
		vc.Thaw()
		took := talkAgain(t, a, aIn, v, vIn, 20*testTimeout)
		t.Logf("round %d: traffic both ways again %v after the freeze", round, took)
	}
}

// TestHostileRedialGetsNewConversation: after one side drops a session
// the other never heard end (its RST is lost), a new dial does not reuse
// the old conversation, and the stale side gives way.
func TestHostileRedialGetsNewConversation(t *testing.T) {
	n, a, aIn, v, vIn, _ := halfOpenPair(t, 300)
	old := a.lookup(v.LocalAddr())
	old.mu.Lock()
	oldConv := old.conv
	old.mu.Unlock()
	// A forgets the session silently: V never hears of it.
	n.Partition(a.LocalAddr(), v.LocalAddr())
	a.kill(old, ErrPeerTimeout, true)
	n.Heal(a.LocalAddr(), v.LocalAddr())
	talkAgain(t, a, aIn, v, vIn, 20*testTimeout)
	s := a.lookup(v.LocalAddr())
	s.mu.Lock()
	conv := s.conv
	s.mu.Unlock()
	if conv == oldConv {
		t.Fatalf("re-dial reused conversation %x", conv)
	}
}

// TestHostileStalledSessionDies: V stops reading its socket but its timer
// still sends keepalives; A's data gets no acknowledgement. A ends the
// session after about RetryTimeout although V's pings keep arriving.
func TestHostileStalledSessionDies(t *testing.T) {
	n := faultnet.New(500)
	aIn := newInbox()
	a := listenMem(t, n, aIn.config(fastConfig()))
	vc, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vcfg := Config{RetryInterval: 50 * time.Millisecond, RetryTimeout: time.Minute}
	v, err := New(vc, withSuiteKey(vcfg))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := a.Send(v.LocalAddr(), 1, []byte("up")); err != nil {
		t.Fatal(err)
	}
	if err := a.Drain(t.Context(), v.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	vc.Freeze()
	defer vc.Thaw()
	start := time.Now()
	a.Send(v.LocalAddr(), 1, make([]byte, 5000))
	d := waitDown(t, aIn, 20*testTimeout)
	if !errors.Is(d.err, ErrPeerTimeout) {
		t.Fatalf("down error %v, want ErrPeerTimeout", d.err)
	}
	t.Logf("stalled session ended after %v", d.at.Sub(start))
}
