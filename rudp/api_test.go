package rudp

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

func TestSendMsgNoWaitAndContext(t *testing.T) {
	n := faultnet.New(11)
	cfg := fastConfig()
	cfg.RetryTimeout = 30 * time.Second // the cut peer must stay up
	cfg.MaxQueued = 4096
	a := listenMem(t, n, cfg)
	bIn := newInbox()
	b := listenMem(t, n, bIn.config(cfg))
	to := b.LocalAddr()
	if err := a.SendMsg(context.Background(), to, 1, nil, []byte("x"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Drain(context.Background(), to); err != nil {
		t.Fatal(err)
	}
	n.Partition(a.LocalAddr(), to)
	big := make([]byte, 3000)
	for range 2 { // the second fills the queue past MaxQueued only with the first unacknowledged
		a.SendMsg(context.Background(), to, 1, nil, big, SendOptions{NoWait: true})
	}
	err := a.SendMsg(context.Background(), to, 1, nil, big, SendOptions{NoWait: true})
	if !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("NoWait send to a full queue: %v, want ErrWouldBlock", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = a.SendMsg(ctx, to, 1, nil, big, SendOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked send with an ending context: %v, want DeadlineExceeded", err)
	}
	n.Heal(a.LocalAddr(), to)
	if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == 2 }) {
		t.Fatalf("got %d messages, want 2 (the refused ones must not be queued)", bIn.count())
	}
	time.Sleep(50 * time.Millisecond)
	if c := bIn.count(); c != 2 {
		t.Fatalf("got %d messages, want 2", c)
	}
}

func TestSendMsgDoneAndAckNow(t *testing.T) {
	a := listenUDP(t, Config{})
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	done := make(chan error, 1)
	err := a.SendMsg(context.Background(), b.LocalAddr(), 3, []byte("h"), []byte("body"), SendOptions{AckNow: true, Done: func(err error) { done <- err }})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Done not called")
	}
	if bIn.count() != 1 || string(bIn.msgs[0].payload) != "hbody" {
		t.Fatalf("got %v", bIn.msgs)
	}
}

func TestInvalidAddrAndTooLargeWrapSentinels(t *testing.T) {
	a := listenUDP(t, Config{})
	for _, to := range []netip.AddrPort{{}, netip.MustParseAddrPort("127.0.0.1:0")} {
		if err := a.Send(to, 1, nil); !errors.Is(err, ErrInvalidAddr) {
			t.Errorf("Send to %q: %v, want ErrInvalidAddr", to, err)
		}
		if err := a.USend(to, 1, nil); !errors.Is(err, ErrInvalidAddr) {
			t.Errorf("USend to %q: %v, want ErrInvalidAddr", to, err)
		}
		if err := a.SendMsg(context.Background(), to, 1, nil, nil, SendOptions{}); !errors.Is(err, ErrInvalidAddr) {
			t.Errorf("SendMsg to %q: %v, want ErrInvalidAddr", to, err)
		}
	}
	to := netip.MustParseAddrPort("127.0.0.1:9")
	if err := a.SendMsg(context.Background(), to, 1, make([]byte, MaxHeaderSize+1), nil, SendOptions{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized header: %v, want ErrTooLarge", err)
	}
	if err := a.USendWithHeader(to, 1, nil, make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized unreliable body: %v, want ErrTooLarge", err)
	}
}

// TestPauseResume: while paused nothing is delivered and the sender's
// queue stops draining once the window is full; Resume delivers all, in
// order, on a transport goroutine.
func TestPauseResume(t *testing.T) {
	cfg := Config{RecvWindow: 32, SendWindow: 32}
	var mu sync.Mutex
	var got []uint32
	var onCaller atomic.Bool
	var resumer atomic.Int64
	bcfg := cfg
	bcfg.OnMessage = func(_ netip.AddrPort, _ byte, p []byte, _ bool) {
		if goid() == resumer.Load() {
			onCaller.Store(true)
		}
		mu.Lock()
		got = append(got, binary.BigEndian.Uint32(p))
		mu.Unlock()
	}
	a := listenUDP(t, cfg)
	b := listenUDP(t, bcfg)
	to := b.LocalAddr()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	msg := func(i int) []byte { p := make([]byte, 1000); binary.BigEndian.PutUint32(p, uint32(i)); return p }
	if err := a.Send(to, 1, msg(0)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, func() bool { return count() == 1 })
	b.Pause(a.LocalAddr())
	b.Pause(a.LocalAddr()) // a second Pause does not count
	const total = 400
	for i := 1; i < total; i++ {
		if err := a.Send(to, 1, msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The sender's queue stays full: a paused receiver's window closes.
	time.Sleep(300 * time.Millisecond)
	if c := count(); c > 1+64 {
		t.Fatalf("%d messages delivered while paused", c)
	}
	st, _ := a.Peer(to)
	if st.Queued < 100*1000 {
		t.Fatalf("sender has %d bytes queued, want most of the paused stream", st.Queued)
	}
	if s := b.Stats(); s.Paused != 1 {
		t.Fatalf("Stats.Paused = %d, want 1", s.Paused)
	}
	resumer.Store(goid())
	b.Resume(a.LocalAddr())
	waitUntil(t, 10*time.Second, func() bool { return count() == total })
	mu.Lock()
	for i, v := range got {
		if v != uint32(i) {
			t.Fatalf("message %d carries %d: order broken", i, v)
		}
	}
	mu.Unlock()
	if onCaller.Load() {
		t.Fatal("Resume delivered on the caller's goroutine")
	}
	b.Resume(a.LocalAddr())                         // not paused: nothing happens
	b.Pause(netip.MustParseAddrPort("127.0.0.1:1")) // unknown: ignored
}

// TestPauseFromOnMessage: Pause and Resume called from inside OnMessage
// keep order and lose nothing.
func TestPauseFromOnMessage(t *testing.T) {
	var bp atomic.Pointer[Transport]
	var mu sync.Mutex
	var got []uint32
	resumeCh := make(chan netip.AddrPort, 1000)
	bcfg := Config{RecvWindow: 16, SendWindow: 16}
	bcfg.OnMessage = func(from netip.AddrPort, _ byte, p []byte, _ bool) {
		mu.Lock()
		got = append(got, binary.BigEndian.Uint32(p))
		n := len(got)
		mu.Unlock()
		if n%7 == 0 {
			bp.Load().Pause(from)
			resumeCh <- from
		}
	}
	a := listenUDP(t, Config{RecvWindow: 16, SendWindow: 16})
	b := listenUDP(t, bcfg)
	bp.Store(b)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case from := <-resumeCh:
				time.Sleep(time.Millisecond)
				b.Resume(from)
			case <-stop:
				return
			}
		}
	}()
	const total = 500
	for i := range total {
		p := make([]byte, 200)
		binary.BigEndian.PutUint32(p, uint32(i))
		if err := a.Send(b.LocalAddr(), 1, p); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == total })
	mu.Lock()
	defer mu.Unlock()
	for i, v := range got {
		if v != uint32(i) {
			t.Fatalf("message %d carries %d", i, v)
		}
	}
}

// TestPeerEventsOnEventGoroutine: OnPeerUp and OnPeerDown run in order on
// one goroutine that is neither the read loop nor the timer, and a slow
// OnPeerDown does not stop packets being read.
func TestPeerEventsOnEventGoroutine(t *testing.T) {
	n := faultnet.New(12)
	var mu sync.Mutex
	var log []string
	gids := map[int64]bool{}
	release := make(chan struct{})
	cfg := fastConfig()
	aIn := newInbox()
	acfg := aIn.config(cfg)
	acfg.OnPeerUp = func(addr netip.AddrPort, _ uint64) {
		mu.Lock()
		log = append(log, "up "+addr.String())
		gids[goid()] = true
		mu.Unlock()
	}
	acfg.OnPeerDown = func(addr netip.AddrPort, _ error) {
		mu.Lock()
		log = append(log, "down "+addr.String())
		gids[goid()] = true
		mu.Unlock()
		<-release
	}
	a := listenMem(t, n, acfg)
	bc, _ := n.Listen("127.0.0.1:0")
	b, err := New(bc, withSuiteKey(cfg))
	if err != nil {
		t.Fatal(err)
	}
	c := listenMem(t, n, cfg)
	a.Send(b.LocalAddr(), 1, []byte("x"))
	a.Send(c.LocalAddr(), 1, []byte("x"))
	a.Drain(context.Background(), b.LocalAddr())
	bc.Close() // b dies silently; OnPeerDown blocks
	b.Close()
	waitUntil(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(log) == 3 })
	// The read loop still runs: c's messages arrive while OnPeerDown blocks.
	c.Send(a.LocalAddr(), 2, []byte("y"))
	if !aIn.waitFor(5*time.Second, func() bool { return len(aIn.msgs) == 1 }) {
		t.Fatal("a blocked OnPeerDown stopped the read loop")
	}
	close(release)
	mu.Lock()
	defer mu.Unlock()
	if len(gids) != 1 {
		t.Fatalf("events ran on %d goroutines, want 1", len(gids))
	}
	if !strings.HasPrefix(log[2], "down "+b.LocalAddr().String()) {
		t.Fatalf("events %v", log)
	}
}

func TestStatsCounters(t *testing.T) {
	n := faultnet.New(13)
	n.SetFaults(faultnet.Faults{Loss: 0.3})
	cfg := fastConfig()
	cfg.RetryTimeout = 5 * time.Second
	a := listenMem(t, n, cfg)
	bIn := newInbox()
	b := listenMem(t, n, bIn.config(cfg))
	for range 20 {
		if err := a.Send(b.LocalAddr(), 1, make([]byte, 5000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Drain(context.Background(), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	a.USend(b.LocalAddr(), 1, make([]byte, 10_000))
	s := a.Stats()
	if s.BytesOut < 100_000 || s.Retransmits == 0 || s.Splits != 1 || s.PacketsOut == 0 {
		t.Fatalf("sender stats %+v", s)
	}
	if r := b.Stats(); r.BytesIn == 0 {
		t.Fatalf("receiver stats %+v", r)
	}
}

func waitUntil(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goid returns the current goroutine's id (tests only).
func goid() int64 {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	var id int64
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + int64(c-'0')
	}
	return id
}
