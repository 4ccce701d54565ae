package mars

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/syncbuf"
)

// TestReplicasAfterFailover: after its MARS dies, a node names the replica
// it uses now, lists the dead one as failed, and its log says what happened
// in order: the move, then the answer of the next MARS (not "MARS back").
func TestReplicasAfterFailover(t *testing.T) {
	s1 := startServer(t, "", fastOpts())
	s2 := startServer(t, "", fastOpts())
	var logs syncbuf.Buffer
	cfg := ClientConfig{Interval: fastInterval, FailoverAfter: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	n := startNode(t, fmt.Sprintf("%s,%s", s1.Addr(), s2.Addr()), cfg)
	waitFor(t, 5*time.Second, "the first sync", func() bool { return n.c.InTouch() })
	r := n.c.Replicas()
	if len(r) != 2 || r[0].State != ReplicaInUse || r[1].State != ReplicaStandby || r[1].LastAnswerMs != -1 ||
		n.c.MarsInUse() != s1.Addr().String() {
		t.Fatalf("before: in use %s, replicas %+v", n.c.MarsInUse(), r)
	}

	s1.crash()
	waitFor(t, 10*time.Second, "the node served by the second MARS", func() bool {
		r = n.c.Replicas()
		return n.c.InTouch() && n.c.MarsInUse() == s2.Addr().String() && r[1].State == ReplicaInUse
	})
	if r[0].State != ReplicaFailed || r[0].LastAnswerMs < 0 || r[1].LastAnswerMs < 0 {
		t.Errorf("after: %+v", r)
	}
	text := logs.String()
	moved := strings.Index(text, "moving to the next address")
	answered := strings.Index(text, "the next MARS answers")
	if moved < 0 || answered < moved || strings.Contains(text[moved:], "MARS back") {
		t.Errorf("log lines out of order or misleading:\n%s", text)
	}
	if !strings.Contains(text[answered:], "left="+s1.Addr().String()) {
		t.Errorf("the answer line does not name the MARS left:\n%s", text)
	}
}

// TestResolveAgainAfterSilence: with one MARS name and a long cache TTL,
// a client whose MARS has been silent for FailoverAfter resolves the name
// again at its next report (a rescheduled pod has a new address).
func TestResolveAgainAfterSilence(t *testing.T) {
	cfg := ClientConfig{Interval: fastInterval, FailoverAfter: 300 * time.Millisecond, MarsAddrTTL: time.Hour}
	n := newTestNode(t, "127.0.0.1:1", cfg) // not started: the test drives the checks
	c := n.c
	if _, ok := c.resolve(time.Now()); !ok {
		t.Fatal("no MARS address")
	}
	c.lastReply.Store(c.clock())
	c.maybeFailover()
	if c.resolvedAt.IsZero() {
		t.Fatal("resolved again right after an answer")
	}
	c.epoch = c.epoch.Add(-time.Second) // a second of silence since the answer
	c.resolvedAt = c.resolvedAt.Add(-time.Second)
	c.maybeFailover()
	if !c.resolvedAt.IsZero() {
		t.Fatal("after FailoverAfter of silence the cached address is still used")
	}
}
