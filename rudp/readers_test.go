package rudp

import (
	"fmt"
	"net/netip"
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
