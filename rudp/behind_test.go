package rudp

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestSilenceNotJudgedWhileReadLoopBehind: a receiver whose read loop is
// held up (here by an OnMessage that stalls it, standing in for a read
// goroutine starved of CPU) for three silence limits while its peer keeps
// sending a multi-MB message must not declare the peer silent: the
// peer's packets wait unread in its own socket. Once the read loop runs
// again the message arrives and neither side saw the other go down.
func TestSilenceNotJudgedWhileReadLoopBehind(t *testing.T) {
	const stall = 3 * testTimeout
	aIn, bIn := newInbox(), newInbox()
	a := listenUDP(t, aIn.config(Config{RetryTimeout: 20 * stall})) // a does not judge
	bcfg, stalled := stallOn(bIn.config(fastConfig()), 1, stall)
	b := listenUDP(t, bcfg)
	if err := a.Send(b.LocalAddr(), 1, []byte("stall")); err != nil {
		t.Fatal(err)
	}
	<-stalled
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	if err := a.Send(b.LocalAddr(), 2, big); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(20*stall, func() bool { return len(bIn.msgs) == 2 || len(bIn.downs) > 0 }) {
		t.Fatal("the message did not arrive")
	}
	bIn.mu.Lock()
	defer bIn.mu.Unlock()
	if len(bIn.downs) > 0 {
		t.Fatalf("receiver declared its peer down while its own read loop was behind: %v", bIn.downs[0].err)
	}
	if m := bIn.msgs[1]; m.kind != 2 || !bytes.Equal(m.payload, big) {
		t.Fatalf("got kind %d, %d bytes; want kind 2, %d bytes", m.kind, len(m.payload), len(big))
	}
	aIn.mu.Lock()
	defer aIn.mu.Unlock()
	if len(aIn.downs) > 0 {
		t.Fatalf("sender saw the receiver go down: %v", aIn.downs[0].err)
	}
}

// TestSlowDeliveryKeepsPeerInformed: a deliverer that decodes slowly
// under the session's lock (3 µs per byte, standing in for a process short
// of CPU: a full receive window then takes 1.5 silence limits) must not
// keep the session's keepalives and acknowledgements from leaving: its
// peer must not call it silent or stalled. The receiver pauses the
// session until the sender's window is full, then resumes it, so that the
// deliverer pulls a whole window at once.
func TestSlowDeliveryKeepsPeerInformed(t *testing.T) {
	// A silence limit of 3 s: the window takes 4.5 s, and the sender sees
	// progress every 256 KiB (0.75 s) if the deliverer lets go. (With a
	// 1 s limit and 1 µs per byte, the same proportions, a test process
	// stalled for a second beside two CPU-bound processes was called
	// silent: the machine's stall, not the deliverer's.)
	cfg := Config{RetryInterval: 100 * time.Millisecond, RetryTimeout: 6 * testTimeout}
	aIn, bIn := newInbox(), newInbox()
	a := listenUDP(t, aIn.config(cfg))
	b := listenUDP(t, bIn.config(cfg))
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(10*testTimeout, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("the first message did not arrive")
	}
	b.Pause(a.LocalAddr())
	big := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16)
	if err := a.Send(b.LocalAddr(), 2, big); err != nil {
		t.Fatal(err)
	}
	s := b.lookup(a.LocalAddr())
	full := func() bool { // b's receive limit is reached
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.kcp != nil && s.kcp.RecvHeld() >= b.cfg.RecvWindow*recvBytesPerSegment*3/4
	}
	waitUntil(t, 10*testTimeout, full)
	slow := func(tr *Transport, n int) {
		if tr == b {
			time.Sleep(time.Duration(3*n) * time.Microsecond)
		}
	}
	testDecodeHook.Store(&slow)
	defer testDecodeHook.Store(nil)
	b.Resume(a.LocalAddr())
	if !bIn.waitFor(80*testTimeout, func() bool { return len(bIn.msgs) == 2 || len(bIn.downs) > 0 }) {
		t.Fatal("the message did not arrive")
	}
	aIn.mu.Lock()
	defer aIn.mu.Unlock()
	if len(aIn.downs) > 0 {
		t.Fatalf("sender called the slow receiver down: %v", aIn.downs[0].err)
	}
	bIn.mu.Lock()
	defer bIn.mu.Unlock()
	if len(bIn.downs) > 0 {
		t.Fatalf("receiver saw its peer go down: %v", bIn.downs[0].err)
	}
	if m := bIn.msgs[1]; m.kind != 2 || !bytes.Equal(m.payload, big) {
		t.Fatalf("got kind %d, %d bytes; want kind 2, %d bytes", m.kind, len(m.payload), len(big))
	}
}

// TestHandshakeNotJudgedWhileReadLoopBehind: a dialer whose read loop is
// held up (an OnMessage that stalls it, standing in for a read goroutine
// starved of CPU) for three handshake limits while the answer to its SYN
// waits unread in its socket must not give up on the handshake: once the
// read loop runs again the session comes up and the message is delivered.
func TestHandshakeNotJudgedWhileReadLoopBehind(t *testing.T) {
	const stall = 3 * testTimeout
	_, aIn, bIn := dialWhileStalled(t, stall)
	if !bIn.waitFor(20*stall, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("the message did not arrive: the dialer gave up on an answered handshake")
	}
	aIn.mu.Lock()
	defer aIn.mu.Unlock()
	for _, d := range aIn.downs {
		t.Fatalf("the dialer saw a peer go down: %v", d.err)
	}
}

// dialWhileStalled makes a transport a dial b while a's read loop is held
// up for stall (a third transport, which never judges, sends the message
// that stalls it), so that b's answer waits unread in a's socket. It
// returns b and the inboxes of a and b.
func dialWhileStalled(t *testing.T, stall time.Duration) (b *Transport, aIn, bIn *inbox) {
	aIn, bIn, cIn := newInbox(), newInbox(), newInbox()
	acfg, stalled := stallOn(aIn.config(fastConfig()), 9, stall)
	a := listenUDP(t, acfg)
	b = listenUDP(t, bIn.config(fastConfig()))
	c := listenUDP(t, cIn.config(Config{RetryTimeout: 20 * stall})) // c does not judge
	if err := c.Send(a.LocalAddr(), 9, []byte("stall")); err != nil {
		t.Fatal(err)
	}
	<-stalled
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil { // a dials b
		t.Fatal(err)
	}
	return b, aIn, bIn
}

// stallOn makes cfg's OnMessage hold up the read loop for d when a message
// of kind arrives (the fault injected; tests send one such message); the
// channel closes then. Without MayBlock, OnMessage runs on the read loop.
func stallOn(cfg Config, kind byte, d time.Duration) (Config, <-chan struct{}) {
	deliver := cfg.OnMessage
	stalled := make(chan struct{})
	cfg.OnMessage = func(from netip.AddrPort, k byte, p []byte, reliable bool) {
		if k == kind {
			close(stalled)
			time.Sleep(d)
		}
		deliver(from, k, p, reliable)
	}
	return cfg, stalled
}

// TestSilenceNotJudgedUnderReadBacklog: a receiver whose socket fills
// with seconds of work at once (a burst of datagrams, each handled
// slowly, standing in for a process short of CPU) reads full batch after
// full batch, each read begun just now; the keepalives of an idle peer
// wait behind the burst. It must not call that peer silent before it has
// read what waits: seen in a race-enabled publisher that called all its
// 30 subscriber processes silent at once and lost what it had queued.
func TestSilenceNotJudgedUnderReadBacklog(t *testing.T) {
	const burst, each = 1500, 2 * time.Millisecond // 3 s of handling: 6 silence limits
	aIn, bIn, cIn := newInbox(), newInbox(), newInbox()
	quiet := Config{RetryInterval: 100 * time.Millisecond, RetryTimeout: time.Minute} // a and c do not judge
	a := listenUDP(t, aIn.config(quiet))
	c := listenUDP(t, cIn.config(quiet))
	bcfg := bIn.config(fastConfig())
	deliver := bcfg.OnMessage
	var slow atomic.Int64
	bcfg.OnMessage = func(from netip.AddrPort, k byte, p []byte, reliable bool) {
		if k == 7 {
			slow.Add(1)
			time.Sleep(each)
			return
		}
		deliver(from, k, p, reliable)
	}
	b := listenUDP(t, bcfg)
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(10*testTimeout, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("the first message did not arrive")
	}
	payload := bytes.Repeat([]byte("x"), 1000) // one per datagram
	for range burst {
		if err := c.USend(b.LocalAddr(), 7, payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Send(b.LocalAddr(), 2, []byte("after the burst")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(time.Minute, func() bool { return len(bIn.msgs) == 2 || len(bIn.downs) > 0 }) {
		t.Fatal("the message after the burst did not arrive")
	}
	bIn.mu.Lock()
	defer bIn.mu.Unlock()
	for _, d := range bIn.downs {
		if d.addr == a.LocalAddr() {
			t.Fatalf("the receiver called its idle peer down while its keepalives waited in the socket (%d of %d slow datagrams handled): %v",
				slow.Load(), burst, d.err)
		}
	}
	t.Logf("%d of %d slow datagrams handled", slow.Load(), burst)
}

// TestHandshakeAnsweredPastCookieLife: a dialer whose read loop is held up
// longer than the responder's cookies live reads the SYN-ACK too late: the
// responder refuses the ACK that echoes the expired cookie. The dialer
// must start the handshake again (once) and deliver what it queued, not
// give up on a peer that answered (it dropped its queue so under -race).
func TestHandshakeAnsweredPastCookieLife(t *testing.T) {
	const stall = 4 * time.Second // cookies live 1 to 2 buckets of max(RetryTimeout, 1 s)
	b, aIn, bIn := dialWhileStalled(t, stall)
	if !bIn.waitFor(10*stall, func() bool { return len(bIn.msgs) == 1 }) {
		aIn.mu.Lock()
		defer aIn.mu.Unlock()
		t.Fatalf("the message did not arrive; the dialer's peer-down events: %v", aIn.downs)
	}
	aIn.mu.Lock()
	defer aIn.mu.Unlock()
	for _, d := range aIn.downs {
		if d.addr == b.LocalAddr() {
			t.Fatalf("the dialer saw the responder go down: %v", d.err)
		}
	}
}
