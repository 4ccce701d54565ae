package rudp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

const testTimeout = 500 * time.Millisecond

func fastConfig() Config {
	return Config{RetryInterval: 100 * time.Millisecond, RetryTimeout: testTimeout}
}

// waitDown waits for a peer-down event about addr and returns its error.
func waitDown(t *testing.T, in *inbox, within time.Duration) peerDown {
	t.Helper()
	if !in.waitFor(within, func() bool { return len(in.downs) > 0 }) {
		t.Fatalf("no peer-down event within %v", within)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.downs[0]
}

func TestPeerClosedGracefully(t *testing.T) {
	aIn, bIn := newInbox(), newInbox()
	a := listenUDP(t, aIn.config(Config{}))
	b := listenUDP(t, bIn.config(Config{}))
	if err := a.Send(b.LocalAddr(), 1, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	bIn.waitFor(2*time.Second, func() bool { return len(bIn.msgs) == 1 })
	start := time.Now()
	b.Close()
	d := waitDown(t, aIn, time.Second)
	if !errors.Is(d.err, ErrPeerClosed) || !errors.Is(d.err, ErrPeerDown) {
		t.Fatalf("down error %v, want ErrPeerClosed", d.err)
	}
	t.Logf("close seen after %v", d.at.Sub(start))
}

// TestPeerKilled: the peer's socket vanishes without a close frame. The
// silence limit finds it, and sends pending on it fail.
func TestPeerKilled(t *testing.T) {
	n := faultnet.New(2)
	aIn := newInbox()
	a := listenMem(t, n, aIn.config(fastConfig()))
	bc, _ := n.Listen("127.0.0.1:0")
	b, err := New(bc, withSuiteKey(fastConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Send(b.LocalAddr(), 1, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := a.Drain(context.Background(), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	bc.Close() // the process died: no FIN
	start := time.Now()
	for i := range 10 {
		if err := a.Send(b.LocalAddr(), 1, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	drained := make(chan error, 1)
	go func() { drained <- a.Drain(context.Background(), b.LocalAddr()) }()
	d := waitDown(t, aIn, testTimeout+time.Second)
	if !errors.Is(d.err, ErrPeerTimeout) {
		t.Fatalf("down error %v, want ErrPeerTimeout", d.err)
	}
	var pe *PeerError
	if !errors.As(d.err, &pe) || pe.Unacked != 10 {
		t.Fatalf("down error %#v, want 10 unacknowledged messages", d.err)
	}
	if err := <-drained; !errors.Is(err, ErrPeerTimeout) {
		t.Fatalf("pending drain: %v, want ErrPeerTimeout", err)
	}
	if el := d.at.Sub(start); el > testTimeout+time.Second {
		t.Fatalf("detected after %v, want within %v", el, testTimeout+time.Second)
	}
	t.Logf("kill seen after %v", d.at.Sub(start))
}

func TestUnreachablePeer(t *testing.T) {
	aIn := newInbox()
	a := listenUDP(t, aIn.config(fastConfig()))
	// A bound socket that never answers.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	to := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := a.Send(to, 1, []byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	d := waitDown(t, aIn, testTimeout+time.Second)
	if !errors.Is(d.err, ErrUnreachable) {
		t.Fatalf("down error %v, want ErrUnreachable", d.err)
	}
	// The next send dials again.
	if err := a.Send(to, 1, []byte("again")); err != nil {
		t.Fatal(err)
	}
	if st, ok := a.Peer(to); !ok || st.Established {
		t.Fatalf("peer status %+v %v, want a new dialing session", st, ok)
	}
}

// TestPeerRestarted: a new transport on the same address is a new peer;
// nothing queued for the old one reaches it, and traffic resumes.
func TestPeerRestarted(t *testing.T) {
	aIn := newInbox()
	a := listenUDP(t, aIn.config(fastConfig()))
	b1In := newInbox()
	b1 := listenUDP(t, b1In.config(fastConfig()))
	addr := b1.LocalAddr()
	if err := a.Send(addr, 1, []byte("to b1")); err != nil {
		t.Fatal(err)
	}
	b1In.waitFor(2*time.Second, func() bool { return len(b1In.msgs) == 1 })
	inc1 := b1.Incarnation()
	b1.Abort() // killed: no FIN

	b2In := newInbox()
	b2, err := Listen(addr.String(), withSuiteKey(b2In.config(fastConfig())))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if b2.Incarnation() == inc1 {
		t.Fatal("same incarnation after restart")
	}
	// a still holds the old session: its next packet draws a NOSESS hint
	// (with keys, a dial back), the old session fails, and a later send
	// reaches b2.
	a.Send(addr, 1, []byte("meant for b1"))
	d := waitDown(t, aIn, 2*time.Second)
	if !errors.Is(d.err, ErrPeerReset) {
		t.Fatalf("down error %v, want ErrPeerReset", d.err)
	}
	if err := a.Send(addr, 1, []byte("to b2")); err != nil {
		t.Fatal(err)
	}
	if !b2In.waitFor(2*time.Second, func() bool { return len(b2In.msgs) >= 1 }) {
		t.Fatal("b2 got nothing")
	}
	b2In.mu.Lock()
	defer b2In.mu.Unlock()
	for _, m := range b2In.msgs {
		if string(m.payload) != "to b2" {
			t.Fatalf("b2 got %q, meant for the old incarnation", m.payload)
		}
	}
	if st, _ := a.Peer(addr); st.Incarnation != b2.Incarnation() {
		t.Fatalf("a's session is with incarnation %x, want %x", st.Incarnation, b2.Incarnation())
	}
}

// TestRestartedPeerDialsFirst: the restarted peer sends first; its SYN
// replaces the stale session at once.
func TestRestartedPeerDialsFirst(t *testing.T) {
	aIn := newInbox()
	a := listenUDP(t, aIn.config(fastConfig()))
	b1 := listenUDP(t, fastConfig())
	addr := b1.LocalAddr()
	if err := b1.Send(a.LocalAddr(), 1, []byte("from b1")); err != nil {
		t.Fatal(err)
	}
	aIn.waitFor(2*time.Second, func() bool { return len(aIn.msgs) == 1 })
	b1.Abort()
	b2, err := Listen(addr.String(), withSuiteKey(fastConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.Send(a.LocalAddr(), 1, []byte("from b2")); err != nil {
		t.Fatal(err)
	}
	if !aIn.waitFor(2*time.Second, func() bool { return len(aIn.msgs) == 2 }) {
		t.Fatal("a did not hear from b2")
	}
	d := waitDown(t, aIn, time.Second)
	if !errors.Is(d.err, ErrPeerReset) {
		t.Fatalf("old session ended with %v, want ErrPeerReset", d.err)
	}
}

// TestSimultaneousOpen: both sides dial at once and end up sharing one
// session, with every message delivered.
func TestSimultaneousOpen(t *testing.T) {
	for i := range 20 {
		aIn, bIn := newInbox(), newInbox()
		n := faultnet.New(uint64(i))
		n.SetFaults(faultnet.Faults{Jitter: time.Millisecond})
		a := listenMem(t, n, aIn.config(Config{}))
		b := listenMem(t, n, bIn.config(Config{}))
		done := make(chan error, 1)
		go func() { done <- b.Send(a.LocalAddr(), 2, []byte("from b")) }()
		if err := a.Send(b.LocalAddr(), 1, []byte("from a")); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !aIn.waitFor(2*time.Second, func() bool { return len(aIn.msgs) == 1 }) ||
			!bIn.waitFor(2*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
			t.Fatalf("round %d: messages lost", i)
		}
		sa, _ := a.Peer(b.LocalAddr())
		sb, _ := b.Peer(a.LocalAddr())
		if sa.Incarnation != b.Incarnation() || sb.Incarnation != a.Incarnation() {
			t.Fatalf("round %d: sessions disagree", i)
		}
		if len(aIn.downs)+len(bIn.downs) != 0 {
			t.Fatalf("round %d: a session was torn down: %v %v", i, aIn.downs, bIn.downs)
		}
		a.Close()
		b.Close()
	}
}

// TestPartitionHeals: a partition shorter than the retry timeout loses
// nothing; a longer one ends the session on both sides.
func TestPartitionHeals(t *testing.T) {
	n := faultnet.New(3)
	aIn, bIn := newInbox(), newInbox()
	a := listenMem(t, n, aIn.config(fastConfig()))
	b := listenMem(t, n, bIn.config(fastConfig()))
	a.Send(b.LocalAddr(), 1, []byte{0})
	bIn.waitFor(time.Second, func() bool { return len(bIn.msgs) == 1 })
	n.Partition(a.LocalAddr(), b.LocalAddr())
	for i := 1; i <= 50; i++ {
		a.Send(b.LocalAddr(), 1, []byte{byte(i)})
	}
	time.Sleep(testTimeout / 3) // the partition lasts a while, shorter than the limit
	n.Heal(a.LocalAddr(), b.LocalAddr())
	if !bIn.waitFor(2*time.Second, func() bool { return len(bIn.msgs) == 51 }) {
		t.Fatalf("after a short partition got %d of 51", bIn.count())
	}
	n.Partition(a.LocalAddr(), b.LocalAddr())
	waitDown(t, aIn, testTimeout+time.Second)
	waitDown(t, bIn, testTimeout+time.Second)
}

func TestCloseIdempotentAndSendAfterClose(t *testing.T) {
	a := listenUDP(t, Config{})
	b := listenUDP(t, Config{})
	a.Send(b.LocalAddr(), 1, []byte("x"))
	a.Close()
	a.Close()
	if err := a.Send(b.LocalAddr(), 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if err := a.USend(b.LocalAddr(), 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("usend after close: %v", err)
	}
	// The socket is released: the port can be bound again.
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a.LocalAddr()))
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}
	c.Close()
}

// TestSendTracked: done hears the acknowledgement of each message, or the
// session's end for those never acknowledged.
func TestSendTracked(t *testing.T) {
	n := faultnet.New(5)
	// A retry timeout a starved test process does not outlive by accident:
	// with testTimeout's 500 ms the live session could be judged dead.
	cfg := Config{RetryInterval: 100 * time.Millisecond, RetryTimeout: 2 * time.Second}
	a := listenMem(t, n, cfg)
	bIn := newInbox()
	bc, _ := n.Listen("127.0.0.1:0")
	b, err := New(bc, withSuiteKey(bIn.config(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	results := make(chan error, 20)
	track := func(err error) { results <- err }
	for range 10 {
		if err := a.SendTracked(b.LocalAddr(), 1, []byte("h"), make([]byte, 3000), track); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d: no acknowledgement", i)
		}
	}
	if bIn.count() != 10 {
		t.Fatalf("b got %d messages when all 10 were acknowledged", bIn.count())
	}
	bc.Close() // b dies silently
	for range 5 {
		a.SendTracked(b.LocalAddr(), 1, nil, []byte("lost"), track)
	}
	for i := range 5 {
		select {
		case err := <-results:
			if !errors.Is(err, ErrPeerTimeout) {
				t.Fatalf("lost message %d: %v, want ErrPeerTimeout", i, err)
			}
		case <-time.After(cfg.RetryTimeout + 30*time.Second):
			t.Fatalf("lost message %d: done not called", i)
		}
	}
}

// TestTrackedAckAfterDelivery: a tracked message is acknowledged only
// once the receiver's OnMessage returned for it, even when the receiver
// sends the sender data (which carries acknowledgements) from inside
// OnMessage, before it returns.
func TestTrackedAckAfterDelivery(t *testing.T) {
	acked := make(chan error, 1)
	early := make(chan bool, 1)
	var bp atomic.Pointer[Transport]
	bcfg := fastConfig()
	bcfg.OnMessage = func(from netip.AddrPort, kind byte, _ []byte, _ bool) {
		if kind != 1 {
			return
		}
		if err := bp.Load().Send(from, 2, []byte("reply")); err != nil {
			t.Error(err)
		}
		select {
		case <-acked:
			early <- true
		case <-time.After(testTimeout / 2):
			early <- false
		}
	}
	b := listenUDP(t, bcfg)
	bp.Store(b)
	aIn := newInbox()
	a := listenUDP(t, aIn.config(fastConfig()))
	done := func(err error) { acked <- err }
	if err := a.SendTracked(b.LocalAddr(), 1, nil, []byte("tracked"), done); err != nil {
		t.Fatal(err)
	}
	if <-early {
		t.Fatal("the sender heard the acknowledgement before the receiver's OnMessage returned")
	}
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * testTimeout):
		t.Fatal("no acknowledgement after delivery")
	}
	if !aIn.waitFor(10*testTimeout, func() bool { return len(aIn.msgs) == 1 }) {
		t.Fatal("the reply did not arrive")
	}
}
