package mesh

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// TestStreamWindowWithOlderNode: a node whose transport does not announce
// featureStreamWindow (it then acts as a node of the previous revision:
// it takes and sends at most streamWindowV1 messages in flight, and
// resets a stream past that) and a current one stream thousands of small
// messages both ways: the current node keeps to the older window, so no
// stream is reset, and grants often enough for it. Between two current
// nodes the window is StreamWindowMessages.
func TestStreamWindowWithOlderNode(t *testing.T) {
	c := newStreamCluster(t, 1)
	cur := c.nodes[0]
	old := c.add(withRudp(func(rc *rudp.Config) { rc.Features = 0 }))
	c.waitListed(2)
	for _, n := range []*Node{cur, old} {
		n.HandleStream(1, echoStream)
	}
	runEcho(t, cur, 1, old.GetMyEndPoint(), 3000, 64)
	runEcho(t, old, 1, cur.GetMyEndPoint(), 3000, 64)
	for _, pair := range []struct {
		from, to *Node
		want     uint64
	}{{cur, old, streamWindowV1}, {old, cur, streamWindowV1}} {
		s, err := pair.from.OpenStream(context.Background(), 1, pair.to.GetMyEndPoint(), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		s.learnWindowLocked()
		got := s.peerWin
		s.mu.Unlock()
		s.CloseSend()
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
		if got != pair.want {
			t.Errorf("window from %s to %s: %d, want %d", pair.from.GetMyEndPoint(), pair.to.GetMyEndPoint(), got, pair.want)
		}
	}
	// Two current nodes learn the large window (from their CAPS).
	other := c.add()
	other.HandleStream(1, echoStream)
	s, err := cur.OpenStream(context.Background(), 1, other.GetMyEndPoint(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.learnWindowLocked()
		return s.peerWin == StreamWindowMessages
	}, "the window between current nodes is %d", StreamWindowMessages)
}
