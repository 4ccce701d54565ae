package mars

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// listing is a view's or MARS's nodes (encoded record and listed state)
// and shared data, for comparing the two.
type listing struct {
	nodes map[string]string
	keys  map[string]int16
}

func (l listing) String() string {
	return fmt.Sprintf("%d nodes %v, keys %v", len(l.nodes), l.nodes, l.keys)
}

func (l listing) equal(o listing) bool {
	return maps.Equal(l.nodes, o.nodes) && maps.Equal(l.keys, o.keys)
}

func serverListing(s *Server, app string) (listing, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := listing{nodes: map[string]string{}, keys: map[string]int16{}}
	a := s.apps[app]
	if a == nil {
		return l, 0
	}
	for addr, e := range a.nodes {
		l.nodes[addr] = string(append(appendRecord(nil, &nodeRecord{Addr: e.addr, Inc: e.inc, Type: e.info.Type,
			Role: e.info.Role, Status: e.status(), EndPoint: e.info.EndPoint, Values: e.info.Values}), byte(e.state())))
	}
	for k, e := range a.keys {
		l.keys[k] = e.val
	}
	return l, a.ver
}

func viewListing(v *View) (listing, uint64, uint64) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	l := listing{nodes: map[string]string{}, keys: maps.Clone(v.keys)}
	for addr, n := range v.nodes {
		l.nodes[addr] = string(append(appendRecord(nil, &n.rec), byte(n.mars)))
	}
	return l, v.marsInc, v.ver
}

// TestRestartReconcilesKeptViews restarts MARS (in memory, and with
// DataDir) after changes made while it was down: a node died, a node
// changed its metadata, shared keys were set and removed. Every node's
// view must end equal to the new MARS's state, and the new MARS must get
// there by sending the buckets that differ, not full snapshots.
func TestRestartReconcilesKeptViews(t *testing.T) {
	for _, withData := range []bool{false, true} {
		t.Run(fmt.Sprintf("data=%v", withData), func(t *testing.T) {
			opts := fastOpts()
			if withData {
				opts.DataDir = t.TempDir()
				opts.PersistInterval = 20 * time.Millisecond
			}
			s1 := startServer(t, "", opts)
			addr := s1.Addr().String()
			var nodes []*testNode
			for i := range 6 {
				nodes = append(nodes, startNode(t, addr, ClientConfig{Interval: fastInterval, Type: fmt.Sprint("t", i%2),
					Values: map[string]interface{}{"n": i}}))
			}
			for i := range 60 {
				if err := nodes[i%len(nodes)].c.SetSharedData(fmt.Sprint("key", i), int16(i)); err != nil {
					t.Fatal(err)
				}
			}
			settled := func(s *Server, live []*testNode) bool {
				want, ver := serverListing(s, "")
				for _, n := range live {
					got, inc, v := viewListing(n.c.View())
					if inc != s.Incarnation() || v != ver || !got.equal(want) {
						return false
					}
				}
				return true
			}
			waitFor(t, 5*time.Second, "every view equal to MARS", func() bool { return settled(s1, nodes) })

			s1.Close()
			waitFor(t, 5*time.Second, "out of touch", func() bool { return !nodes[0].c.InTouch() })
			nodes[5].kill() // gone during the outage
			live := nodes[:5]
			if err := nodes[1].c.SetValue("n", "changed"); err != nil {
				t.Fatal(err)
			}
			nodes[1].c.SetSharedData("key7", 777) // keys the node wrote itself (see the race in doc.go)
			nodes[2].c.RemoveSharedData("key8")
			nodes[4].c.SetSharedData("new", 1)

			s2 := startServer(t, addr, opts)
			waitFor(t, 10*time.Second, "every view equal to the new MARS", func() bool { return settled(s2, live) })
			want, _ := serverListing(s2, "")
			if _, ok := want.nodes[nodes[5].c.Addr()]; ok || len(want.nodes) != 5 {
				t.Fatalf("the dead node is listed: %v", want)
			}
			if want.keys["key7"] != 777 || want.keys["new"] != 1 || len(want.keys) != 60 || want.keys["key9"] != 9 {
				t.Fatalf("shared data after the restart: %v", want.keys)
			}
			if _, ok := want.keys["key8"]; ok {
				t.Fatal("a key removed during the outage is back")
			}
			st := s2.Stats()
			t.Logf("new MARS: %d full snapshots, %d bucket syncs, %d waits", st.Fulls, st.Buckets, st.Waits)
			if st.Fulls != 0 || st.Buckets < uint64(len(live)) {
				t.Fatalf("the new MARS sent %d full snapshots and %d bucket syncs, want 0 and one per node", st.Fulls, st.Buckets)
			}
		})
	}
}

// A syncBuckets sync replaces the buckets it lists and keeps the rest of
// the view; a view whose total then differs from MARS's (a difference the
// bucket sums missed) drops to version 0, which gets a full snapshot; a
// second bucket sync (an answer to a digest of the view as it was before
// the first) is refused.
func TestBucketSyncAppliesAndChecksTotal(t *testing.T) {
	a := newAppState("", new(uint64))
	for i := range 50 {
		a.addNode(&nodeEntry{addr: fmt.Sprintf("10.0.0.%d:1", i), inc: 1, info: nodeInfo{Type: "T", Status: StatusOnline}, alive: true, life: StateOnline})
		a.setKey(fmt.Sprint("k", i), int16(i))
	}
	parts, at := a.full(0, 0)
	var old syncBody
	for _, p := range parts {
		r := reader{b: p}
		if err := decodeSyncBody(&r, 6, &old); err != nil {
			t.Fatal(err)
		}
	}
	kept := func() *View { // the view a node kept from the first MARS
		v := newView("10.0.0.0:1", 1)
		if _, ok := v.apply(&syncHead{MarsInc: 1, Flags: syncFull, To: at}, &old, false, time.Now()); !ok {
			t.Fatal("full snapshot refused")
		}
		return v
	}
	// MARS restarted with a changed key, a node gone and one added.
	a.setKey("k3", 333)
	a.removeNode("10.0.0.7:1", goneRemoved, 0)
	a.addNode(&nodeEntry{addr: "10.0.1.1:1", inc: 1, info: nodeInfo{Type: "new", Status: StatusOnline}, alive: true, life: StateOnline})
	apply := func(v *View, diff []int) (bool, uint64) {
		body := a.bucketBody(len(v.digest().buckets), diff)
		var b syncBody
		for _, p := range body {
			r := reader{b: p}
			if err := decodeSyncBody(&r, 7, &b); err != nil {
				t.Fatal(err)
			}
		}
		_, ok := v.apply(&syncHead{MarsInc: 2, Flags: syncFull | syncBuckets, To: a.ver}, &b, false, time.Now())
		_, ver := v.Version()
		return ok, ver
	}
	v := kept()
	d := v.digest()
	mine := a.digestAt(len(d.buckets))
	var diff []int
	for i := range d.buckets {
		if d.buckets[i] != mine.buckets[i] {
			diff = append(diff, i)
		}
	}
	if len(diff) == 0 || len(diff) > 3 {
		t.Fatalf("%d of %d buckets differ, want 1 to 3", len(diff), len(d.buckets))
	}
	if ok, ver := apply(v, diff); !ok || ver != a.ver {
		t.Fatalf("bucket sync: ok %v, version %d, want %d", ok, ver, a.ver)
	}
	s := &Server{apps: map[string]*appState{"": a}}
	want, _ := serverListing(s, "")
	if got, _, _ := viewListing(v); !got.equal(want) {
		t.Fatalf("view after the bucket sync:\n%v\nwant\n%v", got, want)
	}
	a.setKey("k4", 444)
	if ok, _ := apply(v, diff); ok {
		t.Fatal("a second bucket sync was applied")
	}
	if ok, ver := apply(kept(), nil); !ok || ver != 0 {
		t.Fatalf("a bucket sync that misses a difference: ok %v, version %d, want version 0", ok, ver)
	}
}

// A MARS of the revision before digests skips the digest a node sends
// after a restart and sends a full snapshot: the views converge as before.
func TestRestartIntoMarsWithoutDigests(t *testing.T) {
	opts := fastOpts()
	s1 := startServer(t, "", opts)
	addr := s1.Addr().String()
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, startNode(t, addr, ClientConfig{Interval: fastInterval, Type: fmt.Sprint("t", i)}))
	}
	nodes[0].c.SetSharedData("k", 1)
	waitFor(t, 5*time.Second, "settled", func() bool {
		for _, n := range nodes {
			if n.c.View().Len() != 3 || len(n.c.View().AllSharedData()) != 1 {
				return false
			}
		}
		return true
	})
	s1.Close()
	waitFor(t, 5*time.Second, "out of touch", func() bool { return !nodes[0].c.InTouch() })
	s2, cfg, err := newServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s2.noDigest = true
	tr, err := rudp.Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.start(tr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	waitFor(t, 10*time.Second, "every view equal to the old-revision MARS", func() bool {
		want, ver := serverListing(s2, "")
		for _, n := range nodes {
			got, inc, v := viewListing(n.c.View())
			if inc != s2.Incarnation() || v != ver || !got.equal(want) || len(got.nodes) != 3 {
				return false
			}
		}
		return true
	})
	if st := s2.Stats(); st.Buckets != 0 || st.Waits != 0 || st.Fulls < 3 {
		t.Fatalf("stats %+v: want full snapshots only", st)
	}
}

// MARS keeps its digest per change; after any mix of changes it equals the
// digest computed afresh, and a view holding the same state has it too.
func TestDigestKeptPerChange(t *testing.T) {
	a := newAppState("", new(uint64))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		addr := fmt.Sprintf("10.0.%d.%d:1", rng.IntN(4), rng.IntN(50))
		key := fmt.Sprint("k", rng.IntN(200))
		switch rng.IntN(6) {
		case 0:
			if e := a.nodes[addr]; e != nil {
				e.alive = !e.alive
				a.nodeChanged(e)
			} else {
				a.addNode(&nodeEntry{addr: addr, inc: uint64(i), info: nodeInfo{Type: "T", Status: StatusOnline}, alive: true, life: StateOnline})
			}
		case 1:
			if a.nodes[addr] != nil {
				a.removeNode(addr, goneRemoved, 0)
			}
		case 2:
			if e := a.nodes[addr]; e != nil {
				e.info.Type = fmt.Sprint("T", i)
				a.nodeChanged(e)
			}
		case 3, 4:
			a.setKey(key, int16(rng.IntN(5)))
		case 5:
			a.removeKey(key, 0)
		}
	}
	fresh := newDigest(maxDigestBuckets)
	for addr, e := range a.nodes {
		fresh.add(nodeNameHash(addr), nonZero(nodeEntryHash(e.rec, e.state())))
	}
	for k, e := range a.keys {
		fresh.add(keyNameHash(k), keyEntryHash(k, e.val))
	}
	if fresh.total != a.dig.total || !slices.Equal(fresh.buckets, a.dig.buckets) {
		t.Fatal("the digest kept per change differs from the one computed afresh")
	}
	v := newView("x:1", 1)
	parts, at := a.full(0, 0)
	var b syncBody
	for _, p := range parts {
		r := reader{b: p}
		if err := decodeSyncBody(&r, 6, &b); err != nil {
			t.Fatal(err)
		}
	}
	v.apply(&syncHead{MarsInc: 1, Flags: syncFull, To: at}, &b, false, time.Now())
	d := v.digest()
	mine := a.digestAt(len(d.buckets))
	if d.total != mine.total || !slices.Equal(d.buckets, mine.buckets) {
		t.Fatalf("a view of %d nodes and %d keys has another digest than MARS", len(a.nodes), len(a.keys))
	}
}
