package mesh

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// TestE2EPubsubStalledSubscriber: a subscriber process stopped (SIGSTOP)
// for longer than the retry timeout while a publisher streams to it is
// found dead and misses what was published meanwhile (see the package doc,
// "Pub-sub"); once it runs again it must get every later message, once and
// in order: the publisher dials it again and routes to it.
func TestE2EPubsubStalledSubscriber(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	marsBin := buildMarsServer(t)
	mp := startMarsServer(t, marsBin)
	cfg := e2eConfig(t)
	pub, sub := mustStartNode(t, "pub", mp.port, cfg, "pub"), mustStartNode(t, "sub", mp.port, cfg, "sub")
	s := &psSub{p: sub, pattern: "st.x"}
	if r := sub.do("ps-sub st.x - plain"); r != "ok" {
		t.Fatal(r)
	}
	const total, rate = 8000, 1000
	if r := pub.do("ps-pub p0 %d %d st.x", total, rate); r != "started" {
		t.Fatal(r)
	}
	eventually(t, time.Minute, func() bool { return s.count("plain") > 1000 }, "the subscriber gets messages")
	sub.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(3 * e2eRetryTimeout * time.Millisecond) // it must be found dead
	sub.cmd.Process.Signal(syscall.SIGCONT)
	eventually(t, 2*time.Minute, func() bool { return len(pub.eventsWith("PSDONE ")) == 1 }, "the publisher is done")
	if r := pub.eventsWith("PSDONE ")[0]; r != "PSDONE p0 0 -" {
		t.Errorf("publisher: %s", r)
	}
	got := func() []int { l, _, _ := s.received("plain"); return l[0] }
	last := func() bool { l := got(); return len(l) > 0 && l[len(l)-1] == total-1 }
	if !waitFor(2*time.Minute, last) {
		t.Fatalf("the subscriber did not get the last message: %d messages, send failures %v, route %s",
			len(got()), pub.eventsWith("SENDFAIL "), pub.do("ps-route st.x %s", sub.addr))
	}
	l := got()
	var gaps []string
	for k := 1; k < len(l); k++ {
		switch {
		case l[k] <= l[k-1]:
			t.Fatalf("%d after %d: duplicated or out of order", l[k], l[k-1])
		case l[k] > l[k-1]+1:
			gaps = append(gaps, fmt.Sprintf("%d-%d", l[k-1]+1, l[k]-1))
		}
	}
	if len(gaps) > 1 {
		t.Errorf("messages missing outside the stall: %v", gaps)
	}
	t.Logf("%d of %d messages, missed %v; the publisher's send failures: %v", len(l), total, gaps, pub.eventsWith("SENDFAIL "))
}
