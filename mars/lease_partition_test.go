package mars

import (
	"context"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// A holder cut off from MARS in one direction (its renewals lost, or
// MARS's answers lost) sees Lost before another node is granted the key,
// and the other node gets it once the TTL ran out.
func TestLeaseOneWayPartition(t *testing.T) {
	for _, dir := range []string{"to MARS", "from MARS"} {
		t.Run(dir, func(t *testing.T) {
			net := faultnet.New(3)
			s := memServer(t, net)
			s.mu.Lock()
			s.kv.claimsAt = 0
			s.mu.Unlock()
			cfg := ClientConfig{Interval: fastInterval}
			h := memNode(t, net, s.Addr().String(), cfg)
			o := memNode(t, net, s.Addr().String(), cfg)
			for _, n := range []*testNode{h, o} {
				select {
				case <-n.c.Ready():
				case <-time.After(10 * time.Second):
					t.Fatal("not ready")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const ttl = 2 * time.Second
			l, err := h.c.Claim(ctx, "k", ttl)
			if err != nil {
				t.Fatal(err)
			}
			from, to := h.tr.LocalAddr(), s.Addr()
			if dir == "from MARS" {
				from, to = to, from
			}
			cut := time.Now()
			net.SetLinkFaults(from, to, faultnet.Faults{Loss: 1})
			var l2 *Lease
			for {
				var err error
				l2, err = o.c.Claim(ctx, "k", ttl)
				if err == nil {
					break
				}
				if !IsLeaseHeld(err) {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			granted := time.Now()
			select {
			case <-l.Lost():
			default:
				t.Fatalf("another node got the key %v after the cut while the holder's lease is valid", granted.Sub(cut))
			}
			if d := l.Deadline(); !d.Before(granted) {
				t.Fatalf("holder's deadline %v not before the new grant %v", d, granted)
			}
			if l2.Token() <= l.Token() {
				t.Fatalf("token %d after %d", l2.Token(), l.Token())
			}
			if d := granted.Sub(cut); d > ttl+2*time.Second {
				t.Fatalf("key free %v after the cut, TTL %v", d, ttl)
			}
		})
	}
}
