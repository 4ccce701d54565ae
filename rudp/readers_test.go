package rudp

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/pollwake"
)

// TestMayBlockHandsOffTheSocket: OnMessage for a kind Config.MayBlock
// claims runs after the read role is handed on, so while it blocks the
// transport still reads: other peers' messages and a second claimed
// message from another peer arrive; messages of the blocked peer wait and
// keep their order.
func TestMayBlockHandsOffTheSocket(t *testing.T) {
	const slow, fast = 1, 2
	release := make(chan struct{})
	got := make(chan string, 16)
	var blocked atomic.Int32
	cfg := Config{
		MayBlock: func(kind byte) bool { return kind == slow },
		OnMessage: func(_ netip.AddrPort, kind byte, p []byte, _ bool) {
			if kind == slow && string(p) == "block" {
				blocked.Add(1)
				<-release
			}
			got <- string(p)
		},
	}
	srv, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	a, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	wait := func(want string) {
		t.Helper()
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("delivered %q, want %q", p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not delivered", want)
		}
	}
	a.Send(srv.LocalAddr(), slow, []byte("block"))
	deadline := time.Now().Add(10 * time.Second)
	for blocked.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the claimed message was not delivered")
		}
		time.Sleep(time.Millisecond)
	}
	a.Send(srv.LocalAddr(), slow, []byte("a-after")) // waits for the one before
	b.Send(srv.LocalAddr(), fast, []byte("b-fast"))
	wait("b-fast")
	b.Send(srv.LocalAddr(), slow, []byte("b-slow"))
	wait("b-slow")
	close(release)
	wait("block")
	wait("a-after")
}

// TestClaimsHandOffRepeatedly: one claimed message at a time, many times:
// the read role goes back and forth between the goroutines that park as
// followers (on wakers) and every message arrives once, in order; Close
// ends the parked followers (the package's leak check).
func TestClaimsHandOffRepeatedly(t *testing.T) {
	const kind, n = 1, 300
	got := make(chan string, 1)
	srv, err := Listen("127.0.0.1:0", Config{
		MayBlock:  func(byte) bool { return true },
		OnMessage: func(_ netip.AddrPort, _ byte, p []byte, _ bool) { got <- string(p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	a, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i := range n {
		want := fmt.Sprint(i)
		if err := a.Send(srv.LocalAddr(), kind, []byte(want)); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("delivered %q, want %q", p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
	w := pollwake.Get()
	if w == nil {
		return // no wakers here: followers park on the channel
	}
	pollwake.Put(w)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		srv.rd.mu.Lock()
		parked := len(srv.rd.parked)
		srv.rd.mu.Unlock()
		if parked > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no follower parked on a waker")
		}
	}
}

// TestOnBlockingGivesUpDelivery: the work Config.OnBlocking hands back
// runs once its goroutine no longer delivers the peer's messages, so it
// can send to the peer and wait for the peer's answer on the same
// session; OnBlocking itself is called in order. After Pause and Resume
// the work does not run on the event goroutine: another peer's session
// comes up (OnPeerUp) while it waits.
func TestOnBlockingGivesUpDelivery(t *testing.T) {
	const req, reply = 1, 2
	replies := make(chan string, 16)
	var orderMu sync.Mutex // OnBlocking runs on transport goroutines, the check on the test's
	var order []string
	ups := make(chan netip.AddrPort, 4)
	// The work reads the server through an atomic: the test sets it after
	// Listen, and a datagram through the kernel orders nothing for the
	// race detector.
	var srvAt atomic.Pointer[Transport]
	cfg := Config{
		MayBlock: func(kind byte) bool { return kind == req },
		OnMessage: func(_ netip.AddrPort, kind byte, p []byte, _ bool) {
			if kind == reply {
				replies <- string(p)
			}
		},
		OnPeerUp: func(a netip.AddrPort, _ uint64) { ups <- a },
		OnBlocking: func(from netip.AddrPort, _ byte, p []byte) func() {
			orderMu.Lock() // one deliverer per session: the lock only publishes order to the test
			order = append(order, string(p))
			orderMu.Unlock()
			return func() {
				if string(p) == "wait-up" {
					if up := <-ups; up == from {
						<-ups // the caller's own session, then the other peer's
					}
				}
				// Ask the caller and wait for its answer.
				srv := srvAt.Load()
				if err := srv.Send(from, req, []byte("q:"+string(p))); err != nil {
					t.Error(err)
					return
				}
				select {
				case r := <-replies:
					srv.Send(from, reply, []byte(r))
				case <-time.After(30 * time.Second):
					t.Errorf("%s: the answer did not come", p)
				}
			}
		},
	}
	srv := listenUDP(t, cfg)
	srvAt.Store(srv)
	cIn := newInbox()
	var caller *Transport
	callerCfg := cIn.config(Config{})
	callerCfg.OnMessage = func(from netip.AddrPort, kind byte, p []byte, _ bool) {
		if kind == req { // the server's question: answer it
			caller.Send(from, reply, append([]byte("a:"), p...))
			return
		}
		cIn.mu.Lock()
		cIn.msgs = append(cIn.msgs, received{from, kind, p, true})
		cIn.cond.Broadcast()
		cIn.mu.Unlock()
	}
	caller = listenUDP(t, callerCfg)
	for _, m := range []string{"one", "two", "three"} {
		if err := caller.Send(srv.LocalAddr(), req, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if !cIn.waitFor(30*time.Second, func() bool { return len(cIn.msgs) > 0 }) {
			t.Fatalf("%s: no answer: the work waited for its own delivery", m)
		}
		cIn.mu.Lock()
		got := string(cIn.msgs[0].payload)
		cIn.msgs = nil
		cIn.mu.Unlock()
		if want := "a:q:" + m; got != want {
			t.Fatalf("answer %q, want %q", got, want)
		}
	}
	// Paused, then resumed: the work runs off the event goroutine.
	srv.Pause(caller.LocalAddr())
	caller.Send(srv.LocalAddr(), req, []byte("wait-up"))
	waitUntil(t, 30*time.Second, func() bool {
		s := srv.lookup(caller.LocalAddr())
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.kcp != nil && s.kcp.RcvNxt() != s.kcp.Pulled()
	})
	srv.Resume(caller.LocalAddr())
	other := listenUDP(t, Config{})
	other.Send(srv.LocalAddr(), 3, []byte("hello"))
	if !cIn.waitFor(30*time.Second, func() bool { return len(cIn.msgs) > 0 }) {
		t.Fatal("no answer after Resume: the work blocked the event goroutine")
	}
	if got := string(cIn.msgs[0].payload); got != "a:q:wait-up" {
		t.Fatalf("answer %q after Resume", got)
	}
	orderMu.Lock()
	saw := fmt.Sprint(order)
	orderMu.Unlock()
	if want := []string{"one", "two", "three", "wait-up"}; saw != fmt.Sprint(want) {
		t.Fatalf("OnBlocking saw %s, want %v", saw, want)
	}
}
