package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// mixedMessage is message i of a test stream: sizes cycle through 0 B,
// small, a few KiB and (every 50th) up to big bytes; the content names i.
func mixedMessage(i, big int) []byte {
	var size int
	switch {
	case i%50 == 49:
		size = big - i%7
	case i%10 == 3:
		size = 0
	case i%3 == 0:
		size = 4096 + i%1500
	default:
		size = 8 + i%200
	}
	m := bytes.Repeat([]byte{byte(i)}, size)
	if size >= 8 {
		copy(m, fmt.Sprintf("%08d", i%100000000))
	}
	return m
}

// newStreamCluster is newCluster with the default retry timeout (3 s) and
// a sync interval of 1 s (part of the cluster for 3 s without a MARS
// reply): the heavier stream tests move megabytes or a thousand streams
// under -race on a shared machine, where a 1 s stall happens without any
// fault.
func newStreamCluster(t testing.TB, nodes int) *cluster {
	t.Helper()
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{
		OfflineAfter: time.Second, RemoveAfter: 3 * time.Second, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, mars: srv, cfg: testConfig(srv.Addr().Port())}
	c.cfg.RetryTimeout = 3000
	t.Cleanup(c.close)
	for range nodes {
		c.add(WithSyncInterval(time.Second))
	}
	c.waitListed(nodes)
	return c
}

// echoStream answers every message with itself until the opener's
// CloseSend, then returns nil.
func echoStream(ctx context.Context, s *Stream) error {
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(m); err != nil {
			return err
		}
	}
}

// runEcho sends count mixed messages on a new stream from a to addr,
// concurrently reads the echoes and checks them in order, then checks EOF.
func runEcho(t *testing.T, a *Node, cmd uint16, addr string, count, big int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := a.OpenStream(ctx, cmd, addr, mixedMessage(0, big))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sendErr := make(chan error, 1)
	go func() {
		for i := 1; i < count; i++ {
			if err := s.Send(mixedMessage(i, big)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- s.CloseSend()
	}()
	for i := 0; i < count; i++ {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if want := mixedMessage(i, big); !bytes.Equal(m, want) {
			t.Fatalf("message %d: %d bytes, want %d (%.12q)", i, len(m), len(want), m)
		}
	}
	if m, err := s.Recv(); err != io.EOF {
		t.Fatalf("after the last message: %q, %v; want io.EOF", m, err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
}

func TestStreamEcho(t *testing.T) {
	c := newStreamCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleStream(1, echoStream)
	a.HandleStream(1, echoStream)
	t.Run("remote", func(t *testing.T) { runEcho(t, a, 1, b.GetMyEndPoint(), 600, 300<<10) })
	t.Run("self", func(t *testing.T) { runEcho(t, a, 1, a.GetMyEndPoint(), 300, 100<<10) })
	t.Run("max size", func(t *testing.T) {
		s, err := a.OpenStream(context.Background(), 1, b.GetMyEndPoint(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		big := bytes.Repeat([]byte{7}, MaxMessageSize)
		if err := s.Send(big); err != nil {
			t.Fatal(err)
		}
		if err := s.Send(make([]byte, MaxMessageSize+1)); !IsSendError(err) {
			t.Fatalf("oversized Send: %v, want a send error", err)
		}
		if m, err := s.Recv(); err != nil || !bytes.Equal(m, big) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(big), len(m), err)
		}
	})
}

// TestStreamFirst: a nil first message is none; an empty one is a message.
func TestStreamFirst(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	got := make(chan []string, 2)
	b.HandleStream(2, func(ctx context.Context, s *Stream) error {
		var ms []string
		for {
			m, err := s.Recv()
			if err == io.EOF {
				got <- ms
				return nil
			}
			if err != nil {
				return err
			}
			ms = append(ms, fmt.Sprintf("%q", m))
		}
	})
	for _, first := range [][]byte{nil, {}, []byte("hi")} {
		s, err := a.OpenStream(context.Background(), 2, b.GetMyEndPoint(), first)
		if err != nil {
			t.Fatal(err)
		}
		s.Send([]byte("x"))
		s.CloseSend()
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("Recv: %v, want io.EOF", err)
		}
		ms := <-got
		want := []string{`"x"`}
		if first != nil {
			want = append([]string{fmt.Sprintf("%q", first)}, want...)
		}
		if fmt.Sprint(ms) != fmt.Sprint(want) {
			t.Fatalf("first %q: handler received %v, want %v", first, ms, want)
		}
		s.Close()
	}
}

func TestStreamHandlerError(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleStream(3, func(ctx context.Context, s *Stream) error {
		s.Send([]byte("before"))
		return errors.New("boom")
	})
	s, err := a.OpenStream(context.Background(), 3, b.GetMyEndPoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m, err := s.Recv(); err != nil || string(m) != "before" {
		t.Fatalf("Recv: %q %v", m, err)
	}
	_, err = s.Recv()
	var re *RemoteError
	if !IsRequestError(err) || !errors.As(err, &re) || re.Message != "boom" {
		t.Fatalf("Recv after the handler failed: %v, want a request error with its message", err)
	}
	if err := s.Send([]byte("late")); !IsRequestError(err) {
		t.Fatalf("Send after the handler failed: %v", err)
	}

	// No handler: a request error.
	s2, err := a.OpenStream(context.Background(), 99, b.GetMyEndPoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Recv(); !IsRequestError(err) {
		t.Fatalf("Recv on a stream without handler: %v", err)
	}
}

// TestStreamCancel: cancelling the opener's context ends the handler's
// context and both sides' calls with request errors; so does Close.
func TestStreamCancel(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	started := make(chan struct{}, 2)
	ended := make(chan error, 2)
	b.HandleStream(4, func(ctx context.Context, s *Stream) error {
		started <- struct{}{}
		<-ctx.Done()
		_, err := s.Recv()
		ended <- err
		return ctx.Err()
	})
	for _, how := range []string{"cancel", "close"} {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := a.OpenStream(ctx, 4, b.GetMyEndPoint(), []byte("go"))
		if err != nil {
			t.Fatal(err)
		}
		<-started
		if how == "cancel" {
			cancel()
		} else {
			s.Close()
		}
		select {
		case err := <-ended:
			if !IsRequestError(err) {
				t.Fatalf("%s: the handler's Recv returned %v, want a request error", how, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the handler's context was not cancelled", how)
		}
		_, err = s.Recv()
		if how == "cancel" && (!IsRequestError(err) || !errors.Is(err, context.Canceled)) {
			t.Fatalf("opener's Recv after cancel: %v", err)
		}
		if how == "close" && !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("opener's Recv after Close: %v", err)
		}
		cancel()
	}
}

// TestStreamPeerDies: when the handler's node goes silent, the opener's
// Recv fails with a send error once the retry timeout passes.
func TestStreamPeerDies(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	started := make(chan struct{})
	b.HandleStream(5, func(ctx context.Context, s *Stream) error {
		close(started)
		<-ctx.Done()
		return nil
	})
	s, err := a.OpenStream(context.Background(), 5, b.GetMyEndPoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-started
	b.tr.Abort()
	t0 := time.Now()
	if _, err := s.Recv(); !IsSendError(err) {
		t.Fatalf("Recv after the peer died: %v, want a send error", err)
	}
	t.Logf("the opener saw the dead peer after %v (retryTimeout %v)", time.Since(t0), c.cfg.RetryTimeoutDuration())
	if err := s.Send(nil); !IsSendError(err) {
		t.Fatalf("Send after the peer died: %v", err)
	}
}

// TestStreamWindow: a handler that does not read stops its writer after a
// window of messages, and nothing else between the two nodes waits.
func TestStreamWindow(t *testing.T) {
	c := newStreamCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	release := make(chan struct{})
	var got atomic.Int64
	b.HandleStream(6, func(ctx context.Context, s *Stream) error {
		<-release
		for i := 0; ; i++ {
			m, err := s.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if want := mixedMessage(i, 64<<10); !bytes.Equal(m, want) {
				return fmt.Errorf("message %d: %d bytes, want %d", i, len(m), len(want))
			}
			got.Add(1)
		}
	})
	b.HandleStream(1, echoStream)
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })

	s, err := a.OpenStream(context.Background(), 6, b.GetMyEndPoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const count = 3 * StreamWindowMessages
	var sent atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		for i := 0; i < count; i++ {
			if err := s.Send(mixedMessage(i, 64<<10)); err != nil {
				writeErr <- err
				return
			}
			sent.Add(1)
		}
		writeErr <- s.CloseSend()
	}()
	// The writer stops at the window (messages or bytes, whichever first).
	eventually(t, 20*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.wantSent
	}, "the writer waits for credit")
	stuck := sent.Load()
	if stuck >= count || stuck > StreamWindowMessages {
		t.Fatalf("%d messages sent to a reader that reads nothing", stuck)
	}
	// Another stream and an RPC on the same pair go through meanwhile.
	runEcho(t, a, 1, b.GetMyEndPoint(), 50, 8<<10)
	if resp, err := a.SendRPC(1, b.GetMyEndPoint(), []byte("ping")); err != nil || string(resp) != "ping" {
		t.Fatalf("RPC beside a full stream: %q %v", resp, err)
	}
	if now := sent.Load(); now != stuck {
		t.Fatalf("the writer went on from %d to %d without credit", stuck, now)
	}
	close(release)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if got.Load() != count {
		t.Fatalf("handler got %d of %d", got.Load(), count)
	}
}

// TestStreamWindowViolation: a peer that sends past the window has its
// stream reset, and nothing else is affected.
func TestStreamWindowViolation(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	ended := make(chan error, 1)
	b.HandleStream(7, func(ctx context.Context, s *Stream) error {
		<-ctx.Done()
		_, err := s.Recv()
		ended <- err
		return nil
	})
	s, err := a.OpenStream(context.Background(), 7, b.GetMyEndPoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Bypass Send's flow control: frames straight to the transport.
	hdr := appendStreamHeader(nil, s.key.sid, dirFromOpener)
	for range StreamWindowMessages + 1 {
		if err := a.tr.SendWithHeader(b.self, kindStreamData, hdr, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-ended:
		if !IsSendError(err) {
			t.Fatalf("handler's Recv after the violation: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream was not reset")
	}
	if _, err := s.Recv(); !IsSendError(err) {
		t.Fatalf("opener's Recv after its reset: %v", err)
	}
}

// TestStreamsConcurrent: many streams on one pair at once, each in order;
// the leak check of TestMain then finds no goroutine left.
func TestStreamsConcurrent(t *testing.T) {
	c := newStreamCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleStream(1, echoStream)
	const streams, msgs = 1000, 3
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := a.OpenStream(context.Background(), 1, b.GetMyEndPoint(), []byte(fmt.Sprint(i)))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			for j := 1; j < msgs; j++ {
				if err := s.Send([]byte(fmt.Sprint(i, j))); err != nil {
					errs <- err
					return
				}
			}
			s.CloseSend()
			for j := 0; j < msgs; j++ {
				want := fmt.Sprint(i)
				if j > 0 {
					want = fmt.Sprint(i, j)
				}
				if m, err := s.Recv(); err != nil || string(m) != want {
					errs <- fmt.Errorf("stream %d message %d: %q %v", i, j, m, err)
					return
				}
			}
			if _, err := s.Recv(); err != io.EOF {
				errs <- fmt.Errorf("stream %d end: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		a.streams.mu.Lock()
		b.streams.mu.Lock()
		defer a.streams.mu.Unlock()
		defer b.streams.mu.Unlock()
		return len(a.streams.m) == 0 && len(b.streams.m) == 0
	}, "both stream tables are empty")
}

// TestStreamShutdown: Shutdown ends a node's streams on both sides.
func TestStreamShutdown(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	b.HandleStream(1, echoStream)
	s, err := a.OpenStream(context.Background(), 1, b.GetMyEndPoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || string(m) != "x" {
		t.Fatalf("%q %v", m, err)
	}
	go b.Shutdown()
	if _, err := s.Recv(); err == nil || err == io.EOF {
		t.Fatalf("Recv while the handler's node shuts down: %v", err)
	}
	a.Shutdown()
	if _, err := a.OpenStream(context.Background(), 1, b.GetMyEndPoint(), nil); !IsSendError(err) {
		t.Fatalf("OpenStream after Shutdown: %v", err)
	}
}

// TestStreamPeerBudget: many streams from one peer whose handlers do not
// read hold at most streamPeerBudget bytes together; the message past it
// resets its stream, and reading frees room for new streams.
func TestStreamPeerBudget(t *testing.T) {
	old := streamPeerBudget
	streamPeerBudget = 100 << 10
	defer func() { streamPeerBudget = old }()
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	release := make(chan struct{})
	b.HandleStream(8, func(ctx context.Context, s *Stream) error {
		select {
		case <-release:
		case <-ctx.Done():
			return nil
		}
		for {
			if _, err := s.Recv(); err != nil {
				return nil
			}
		}
	})
	msg := make([]byte, 30<<10)
	var streams []*Stream
	for i := range 3 { // 3 x 30 KiB fit in 100 KiB
		s, err := a.OpenStream(context.Background(), 8, b.GetMyEndPoint(), msg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams = append(streams, s)
		_ = i
	}
	over, err := a.OpenStream(context.Background(), 8, b.GetMyEndPoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := over.Send(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := over.Recv(); !IsSendError(err) {
		t.Fatalf("the stream past the budget: %v, want a send error (reset)", err)
	}
	if h := b.streams.held(a.self).Load(); h > streamPeerBudget {
		t.Fatalf("%d bytes held, budget %d", h, streamPeerBudget)
	}
	close(release) // the handlers read: the budget frees up
	eventually(t, 10*time.Second, func() bool { return b.streams.held(a.self).Load() == 0 }, "the held bytes are read")
	for _, s := range streams {
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("stream after the reader caught up: %v", err)
		}
	}
}
