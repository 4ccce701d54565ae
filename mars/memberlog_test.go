package mars

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// MARS logs the membership changes of its nodes at info.
func TestMarsLogsMembership(t *testing.T) {
	var out syncBuffer
	opts := fastOpts()
	opts.Logger = slog.New(slog.NewTextHandler(&out, nil))
	s := startServer(t, "", opts)
	a := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond, Type: "game"})
	b := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond})
	waitReady(t, a.c)
	waitReady(t, b.c)
	a.c.Drain()
	waitFor(t, slow, "draining logged", func() bool { return strings.Contains(out.String(), "mars: node draining") })
	a.close()
	b.kill()
	waitFor(t, slow, "removal logged", func() bool { return strings.Contains(out.String(), "mars: node removed") })
	log := out.String()
	for _, want := range []string{
		`msg="mars: node joined" app="" node=` + a.c.Addr() + " type=game",
		`msg="mars: node left" app="" node=` + a.c.Addr(),
		`msg="mars: node offline" app="" node=` + b.c.Addr(),
		`msg="mars: node removed" app="" node=` + b.c.Addr(),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// A burst of changes is logged line by line up to memberLogBurst a second;
// the rest is summarised with counts.
func TestMemberLogSummarisesBursts(t *testing.T) {
	var out syncBuffer
	m := newMemberLog(slog.New(slog.NewTextHandler(&out, nil)))
	for range memberLogBurst + 120 {
		m.note("mars: node joined", "node", "x")
	}
	m.windowStart = m.windowStart.Add(-time.Second) // the window ended
	m.tick()
	log := out.String()
	if n := strings.Count(log, "msg=\"mars: node joined\""); n != memberLogBurst {
		t.Fatalf("%d lines logged one by one, want %d", n, memberLogBurst)
	}
	if !strings.Contains(log, "mars: node joined (more, not logged one by one)\" count=120") {
		t.Fatalf("no summary:\n%s", log)
	}
}
