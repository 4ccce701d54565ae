package mars

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// eventLog collects membership events from OnNodeEvent.
type eventLog struct {
	mu  sync.Mutex
	got []NodeEvent
}

func (l *eventLog) add(e NodeEvent) {
	l.mu.Lock()
	l.got = append(l.got, e)
	l.mu.Unlock()
}

// of lists "old->new reason" for one incarnation of addr.
func (l *eventLog) of(addr string, inc uint64) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.got {
		if e.Addr == addr && e.Incarnation == inc {
			out = append(out, fmt.Sprintf("%s->%s %s", e.Old, e.New, e.Reason))
		}
	}
	return out
}

func (l *eventLog) last(addr string, inc uint64) State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := StateNone
	for _, e := range l.got {
		if e.Addr == addr && e.Incarnation == inc {
			st = e.New
		}
	}
	return st
}

const slow = 30 * time.Second // bound of condition waits (a hang, not a speed goal)

// A node's life as another node sees it: joining and online on arrival,
// draining, then gone (left) on a graceful leave; a crashed node goes
// offline (silent) and then gone (removed).
func TestMembershipLifecycle(t *testing.T) {
	s := startServer(t, "", fastOpts())
	fast := ClientConfig{Interval: 50 * time.Millisecond}
	watcher := startNode(t, s.Addr().String(), fast)
	var log eventLog
	remove := watcher.c.OnNodeEvent(log.add)
	defer remove()
	waitReady(t, watcher.c)

	a := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond, Type: "game"})
	waitReady(t, a.c)
	waitFor(t, slow, "watcher sees a online", func() bool { return log.last(a.c.Addr(), a.c.Incarnation()) == StateOnline })
	if got := watcher.c.View().OnlineByType("game"); !slices.Equal(got, []string{a.c.Addr()}) {
		t.Fatalf("online games %v", got)
	}
	a.c.Drain()
	if got := a.c.View().OnlineByType("game"); len(got) != 0 {
		t.Fatalf("a still lists itself online after Drain: %v", got)
	}
	waitFor(t, slow, "watcher sees a draining", func() bool { return log.last(a.c.Addr(), a.c.Incarnation()) == StateDraining })
	if got := watcher.c.View().OnlineByType("game"); len(got) != 0 {
		t.Fatalf("a draining node is listed online: %v", got)
	}
	if got := watcher.c.View().AddrsByType("game"); len(got) != 1 {
		t.Fatalf("AddrsByType lists every state: %v", got)
	}
	a.close()
	waitFor(t, slow, "watcher sees a gone", func() bool { return log.last(a.c.Addr(), a.c.Incarnation()) == StateGone })
	want := []string{"none->joining registered", "joining->online ready", "online->draining draining", "draining->gone left"}
	if got := log.of(a.c.Addr(), a.c.Incarnation()); !slices.Equal(got, want) {
		t.Fatalf("events of a graceful life:\n got %v\nwant %v", got, want)
	}

	b := startNode(t, s.Addr().String(), fast)
	waitReady(t, b.c)
	waitFor(t, slow, "watcher sees b online", func() bool { return log.last(b.c.Addr(), b.c.Incarnation()) == StateOnline })
	b.kill()
	waitFor(t, slow, "watcher sees b gone", func() bool { return log.last(b.c.Addr(), b.c.Incarnation()) == StateGone })
	want = []string{"none->joining registered", "joining->online ready", "online->offline silent", "offline->gone removed"}
	if got := log.of(b.c.Addr(), b.c.Incarnation()); !slices.Equal(got, want) {
		t.Fatalf("events of a crash:\n got %v\nwant %v", got, want)
	}
}

func waitReady(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(slow):
		t.Fatal("no first sync")
	}
}

// Ready means the node is in its own view, online: lookups made right
// after it see the node, and so does every node that syncs after it.
func TestReadyMeansOnlineInOwnView(t *testing.T) {
	s := startServer(t, "", fastOpts())
	for range 5 {
		n := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond, Type: "game"})
		waitReady(t, n.c)
		if st := n.c.View().State(n.c.Addr()); st != StateOnline {
			t.Fatalf("ready, but the own view lists the node %v", st)
		}
		if !slices.Contains(n.c.View().OnlineByType("game"), n.c.Addr()) {
			t.Fatal("ready, but not in the own online list")
		}
	}
}

// A node restarted on its address: the old incarnation is gone
// (replaced), the new one joins, in that order.
func TestMembershipRestartOnSameAddress(t *testing.T) {
	opts := fastOpts()
	opts.TrustReportedAddr = true // two transports play one address
	s := startServer(t, "", opts)
	watcher := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond})
	var log eventLog
	defer watcher.c.OnNodeEvent(log.add)()
	a := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond})
	waitReady(t, a.c)
	waitFor(t, slow, "a online", func() bool { return log.last(a.c.Addr(), a.c.Incarnation()) == StateOnline })
	addr, inc := a.c.Addr(), a.c.Incarnation()
	a.kill()
	a2 := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond, Addr: addr, Incarnation: inc + 1})
	waitReady(t, a2.c)
	waitFor(t, slow, "a2 online", func() bool { return log.last(addr, inc+1) == StateOnline })
	log.mu.Lock()
	var seq []string
	for _, e := range log.got {
		if e.Addr == addr {
			seq = append(seq, fmt.Sprintf("%d:%s", e.Incarnation-inc, e.New))
		}
	}
	log.mu.Unlock()
	gone := slices.Index(seq, "0:gone")
	joining := slices.Index(seq, "1:joining")
	if gone < 0 || joining < gone || seq[len(seq)-1] != "1:online" {
		t.Fatalf("restart events out of order: %v", seq)
	}
}

// A node value has one Go type per kind, whoever reads it.
func TestNodeValueTypes(t *testing.T) {
	s := startServer(t, "", fastOpts())
	vals := map[string]interface{}{
		"small": 7, "byte": 200, "neg": -3, "big": uint64(math.MaxUint64), "i64": int64(1) << 40,
		"f32": float32(1.5), "s": "x", "list": []int{1, 200}, "map": map[string]interface{}{"n": uint8(9)},
	}
	a := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond, Values: vals})
	b := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond})
	waitReady(t, a.c)
	waitReady(t, b.c)
	waitFor(t, slow, "b sees a", func() bool { _, ok := b.c.View().Node(a.c.Addr()); return ok })
	want := map[string]interface{}{
		"small": int64(7), "byte": int64(200), "neg": int64(-3), "big": uint64(math.MaxUint64), "i64": int64(1) << 40,
		"f32": float64(1.5), "s": "x", "list": []interface{}{int64(1), int64(200)},
		"map": map[string]interface{}{"n": int64(9)},
	}
	remote, _ := b.c.View().Node(a.c.Addr())
	if !reflect.DeepEqual(remote.Values, want) {
		t.Fatalf("remote values %#v\nwant %#v", remote.Values, want)
	}
	if own := a.c.Self().Values; !reflect.DeepEqual(own, want) {
		t.Fatalf("own values %#v\nwant %#v", own, want)
	}
	if err := a.c.SetValue("later", 300); err != nil {
		t.Fatal(err)
	}
	if v := a.c.Self().Values["later"]; v != int64(300) {
		t.Fatalf("own value set later: %#v", v)
	}
}

// A callback that blocks holds up neither the sync loop nor other
// subscribers: the node stays online at MARS and others keep their events.
func TestBlockingCallbackDoesNotStallSync(t *testing.T) {
	s := startServer(t, "", fastOpts())
	a := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond})
	waitReady(t, a.c)
	block := make(chan struct{})
	defer close(block)
	a.c.OnUpdated(func() { <-block })
	a.c.OnSharedDataUpdate(func(string, int16) { <-block })
	a.c.OnNodeEvent(func(NodeEvent) { <-block })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.c.WatchNodes(ctx) // never read
	var log eventLog
	defer a.c.OnNodeEvent(log.add)()
	before := a.c.syncCount()
	// Many syncs, and node events, while four subscribers are stuck.
	var others []*testNode
	for i := range 3 {
		o := startNode(t, s.Addr().String(), ClientConfig{Interval: 50 * time.Millisecond})
		others = append(others, o)
		if err := a.c.SetSharedData(fmt.Sprint("k", i), int16(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range others {
		waitFor(t, slow, "the free subscriber sees each node online", func() bool {
			return log.last(o.c.Addr(), o.c.Incarnation()) == StateOnline
		})
	}
	waitFor(t, slow, "syncs go on", func() bool { return a.c.syncCount() > before+20 })
	if !a.c.InTouch() {
		t.Fatal("node lost touch with MARS while callbacks block")
	}
	if st := others[0].c.View().State(a.c.Addr()); st != StateOnline {
		t.Fatalf("others list the node %v", st)
	}
}

func (c *Client) syncCount() uint64 {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	return c.syncN
}

// Wire: the life field and the body's states and reasons round-trip, and a
// MARS or client of the earlier revision reads what it knows.
func TestMembershipWire(t *testing.T) {
	r := report{App: "a", Addr: "1.2.3.4:5", Inc: 9, Seq: 3, Life: StateDraining}
	got, err := decodeReport(r.append(nil))
	if err != nil || got.Life != StateDraining || got.life() != StateDraining {
		t.Fatalf("life round trip: %+v %v", got, err)
	}
	r.Life = StateOnline
	if b := r.append(nil); len(b) != len((&report{App: "a", Addr: "1.2.3.4:5", Inc: 9, Seq: 3}).append(nil)) {
		t.Fatal("an online report carries the life field")
	}
	a := newAppState("", new(uint64))
	e := &nodeEntry{addr: "1.2.3.4:5", inc: 1, alive: true, life: StateJoining, info: nodeInfo{Status: StatusOnline}}
	a.addNode(e)
	a.removeNode("9.9.9.9:9", goneLeft, 0)
	a.goneNodes["9.9.9.9:9"] = goneNode{ver: a.ver, why: goneLeft}
	parts, ok := a.delta(0)
	if !ok {
		t.Fatal("no delta")
	}
	msg := appendSync(nil, &syncHead{Addr: "x", From: 0, To: a.ver}, parts[0])
	h, rd, fields, err := decodeSyncHead(msg)
	if err != nil {
		t.Fatal(err)
	}
	var b syncBody
	if err := decodeSyncBody(&rd, fields, &b); err != nil {
		t.Fatal(err)
	}
	_ = h
	if !slices.Equal(b.States, []State{StateJoining}) || !slices.Equal(b.GoneWhy, []byte{goneLeft}) {
		t.Fatalf("states %v, reasons %v", b.States, b.GoneWhy)
	}
	// The earlier revision's body: four arrays, no states.
	old := appendSync(nil, &syncHead{Addr: "x", To: 1}, nil)
	if _, _, _, err := decodeSyncHead(old); err != nil {
		t.Fatal(err)
	}
}
