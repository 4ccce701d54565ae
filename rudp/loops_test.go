package rudp

import (
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// TestSweepDue: the sweep asks to run again after sweepEvery while a
// handshake or data in flight needs watching, and otherwise only when the
// next keepalive or silence limit is due (an idle process sleeps).
func TestSweepDue(t *testing.T) {
	n := faultnet.New(3)
	cfg := Config{RetryInterval: time.Second, RetryTimeout: 3 * time.Second}
	bIn := newInbox()
	a, b := listenMem(t, n, cfg), listenMem(t, n, bIn.config(cfg))
	fast := int64(cfg.withDefaults().sweepEvery())

	// A dial that cannot complete (the path is cut) is retried every sweepEvery.
	n.Partition(a.LocalAddr(), b.LocalAddr())
	if _, err := a.session(b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if now := a.now(); a.sweep(now) > now {
		t.Fatal("a sweep with a handshake under way asks to wait")
	}
	n.Heal(a.LocalAddr(), b.LocalAddr())
	if err := a.Send(b.LocalAddr(), 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("the message did not arrive after the path healed")
	}
	s := a.lookup(b.LocalAddr())
	idle := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.state == stateEstablished && s.queuedLocked() == 0
	}
	waitUntil(t, 5*time.Second, idle)
	now := a.now()
	due := a.sweep(now)
	keepalive := int64(cfg.withDefaults().keepalive())
	if due <= now+fast || due > now+keepalive {
		t.Fatalf("idle: next sweep in %v, want after %v and by %v", time.Duration(due-now), time.Duration(fast), time.Duration(keepalive))
	}
}
