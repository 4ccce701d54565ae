package mesh

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// Fan-out and failure-notification edge cases.

// fanCluster is a sender and receivers-1 receivers recording command 80.
func fanCluster(t *testing.T, nodes int) (*cluster, *Node, []string, *recorder) {
	t.Helper()
	c := newCluster(t, nodes)
	rec := newRecorder()
	var addrs []string
	for _, n := range c.nodes[1:] {
		rec.register(t, n, 80)
		addrs = append(addrs, n.GetMyEndPoint())
	}
	return c, c.nodes[0], addrs, rec
}

func waitOnce(t *testing.T, rec *recorder, addrs []string, skip ...string) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool {
		for _, a := range addrs {
			if !slices.Contains(skip, a) && rec.count(a) != 1 {
				return false
			}
		}
		return true
	}, "every reachable target has the message once")
	time.Sleep(100 * time.Millisecond) // let late duplicates show
	for _, a := range addrs {
		if got := rec.count(a); !slices.Contains(skip, a) && got != 1 {
			t.Fatalf("%s got %d copies", a, got)
		}
	}
}

// TestUSendManyReachesAll: unreliable fan-out on loopback reaches every
// node once.
func TestUSendManyReachesAll(t *testing.T) {
	_, sender, addrs, rec := fanCluster(t, 11)
	if err := sender.USendMany(80, addrs, map[string]interface{}{"u": 1}, 3); err != nil {
		t.Fatal(err)
	}
	waitOnce(t, rec, addrs)
}

// TestSendManyInputs: duplicates are sent once, the sender itself may be
// a target, limit <= 0 means no limit, and a bad address is reported while
// the others are reached.
func TestSendManyInputs(t *testing.T) {
	c, sender, addrs, rec := fanCluster(t, 11)
	rec.register(t, sender, 80)
	self := sender.GetMyEndPoint()
	list := append(append(append([]string{}, addrs...), addrs[:5]...), self, self)
	if err := sender.SendMany(80, list, nil, 0); err != nil {
		t.Fatal(err)
	}
	waitOnce(t, rec, append(addrs, self))

	rec2 := newRecorder()
	for _, n := range c.nodes {
		rec2.register(t, n, 81)
	}
	err := sender.SendMany(81, append([]string{"not-an-address"}, addrs...), nil, 3)
	var fe *FanoutError
	if !errors.As(err, &fe) || !IsSendError(err) || len(fe.Failed) != 1 || fe.Failed[0] != "not-an-address" || fe.Total != 11 {
		t.Fatalf("SendMany with a bad address: %v (%+v)", err, fe)
	}
	waitOnce(t, rec2, addrs)
}

// TestSendManyDeadInnerRelay: a relay of the second level (reached through
// another relay) is dead; its share is still delivered, and the sender
// learns which node failed.
func TestSendManyDeadInnerRelay(t *testing.T) {
	c, sender, addrs, rec := fanCluster(t, 11)
	// limit 2 over 10: the first relay (addrs[0]) gets addrs[1:5] and
	// splits them into pairs led by addrs[1] and addrs[3].
	dead := c.nodes[1+3]
	if dead.GetMyEndPoint() != addrs[3] {
		t.Fatal("cluster order")
	}
	// A session with the dead node exists, so it dies by silence.
	if _, err := c.nodes[1].SendRPC(999, addrs[3], nil); !IsRequestError(err) {
		t.Fatalf("warm-up RPC: %v", err)
	}
	dead.tr.Abort()
	start := time.Now()
	err := sender.SendMany(80, addrs, map[string]interface{}{"v": 1}, 2)
	var fe *FanoutError
	if !errors.As(err, &fe) || len(fe.Failed) != 1 || fe.Failed[0] != addrs[3] || fe.Total != 10 {
		t.Fatalf("SendMany with a dead inner relay: %v", err)
	}
	t.Logf("returned after %v: %v", time.Since(start), err)
	waitOnce(t, rec, addrs, addrs[3])
}

// TestOnSendFailure: a Send to a node that died is accepted (it is
// queued), and OnSendFailure names the node within the retry timeout.
func TestOnSendFailure(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	var mu sync.Mutex
	failed := map[string]error{}
	a.OnSendFailure(func(addr string, err error) {
		mu.Lock()
		failed[addr] = err
		mu.Unlock()
	})
	got := make(chan struct{}, 1)
	b.HandleCommand(1, func(map[string]interface{}) ([]byte, error) { got <- struct{}{}; return nil, nil })
	if err := a.Send(1, b.GetMyEndPoint(), nil); err != nil {
		t.Fatal(err)
	}
	<-got
	b.tr.Abort()
	start := time.Now()
	if err := a.Send(1, b.GetMyEndPoint(), nil); err != nil {
		t.Fatalf("Send to a node that just died: %v", err)
	}
	bound := time.Duration(c.cfg.RetryTimeout)*time.Millisecond + time.Second
	eventually(t, bound, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed[b.GetMyEndPoint()] != nil
	}, "OnSendFailure names the dead node")
	t.Logf("OnSendFailure after %v: %v", time.Since(start), failed[b.GetMyEndPoint()])
}

// TestSpreadSilentRelay: a relay that takes the hop (its transport
// acknowledges it) but never answers with a fan-out ack is given up at the
// hop deadline; its share is delivered by the sender, the relay is
// reported failed, and no wait is left behind. The other hops of the same
// spread are answered as usual.
func TestSpreadSilentRelay(t *testing.T) {
	_, sender, addrs, rec := fanCluster(t, 4)
	silent := newAttacker(t) // a transport that never speaks the mesh
	var targets []netip.AddrPort
	targets = append(targets, silent.tr.LocalAddr())
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, ap)
	}
	// Limit 2: the silent transport relays for addrs[0], addrs[1] is one
	// relay with addrs[2] as its share. The hops wait 9/10 of the time
	// left, the takeover gets the rest: 1 s here (400 ms, with a 4 s
	// deadline, was too short for a dial on a starved machine).
	m := &fanMsg{id: rand.Uint64(), cmd: 80, flags: fanReliable, limit: 2, origin: sender.self,
		deadline: time.Now().Add(10 * time.Second), payload: []byte{0x80}}
	sender.fan.firstSight(m.id)
	takeovers := sender.metrics.relayTakeovers.Load()
	failed := sender.fan.spread(m, targets)
	if len(failed) != 1 || failed[0] != silent.tr.LocalAddr() {
		t.Fatalf("failed %v, want only the silent relay", failed)
	}
	if got := sender.metrics.relayTakeovers.Load() - takeovers; got != 1 {
		t.Fatalf("%d takeovers, want 1", got)
	}
	waitOnce(t, rec, addrs)
	sender.fan.mu.Lock()
	left := len(sender.fan.waits)
	sender.fan.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d hop waits left behind", left)
	}
}

// TestFanoutShareListedTwice: a relay given a share that lists a node
// twice relays to it once and answers at once.
func TestFanoutShareListedTwice(t *testing.T) {
	_, sender, addrs, rec := fanCluster(t, 4)
	var share []netip.AddrPort
	for _, a := range addrs[1:] {
		ap, _ := netip.ParseAddrPort(a)
		share = append(share, ap, ap)
	}
	head, _ := netip.ParseAddrPort(addrs[0])
	m := &fanMsg{id: rand.Uint64(), cmd: 80, flags: fanReliable, limit: 8, origin: sender.self,
		deadline: time.Now().Add(5 * time.Second), payload: []byte{0x80}} // an empty msgpack map
	w := newSpreadWait(1)
	sender.fan.startHop(m, head, share, w, 0)
	select {
	case <-w.done:
	case <-time.After(3 * time.Second):
		t.Fatal("no fan-out ack from a relay given a doubled share")
	}
	if a := w.acks[0]; a.err != nil || len(a.failed) != 0 || len(a.refused) != 0 {
		t.Fatalf("ack %+v, want all reached", a)
	}
	waitOnce(t, rec, addrs)
}
