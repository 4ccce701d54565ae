package mars

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/syncbuf"
	"github.com/marsmesh/marsmesh/rudp"
	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// laggingStore, once lie is set, reports a revision on its watch before it
// delivers the change at that revision, and delivers it when release is
// closed: what etcd 3.4.23 did with a requested progress notification
// (etcd-io/etcd issue 15220).
type laggingStore struct {
	Store
	lie     atomic.Bool
	lied    atomic.Int64  // the revision reported ahead of its change
	held    chan struct{} // closed once a change is held back
	release chan struct{}
}

func (l *laggingStore) Watch(ctx context.Context, rev int64, fn func([]StoreRecord, int64)) error {
	return l.Store.Watch(ctx, rev, func(changes []StoreRecord, rev int64) {
		if len(changes) == 0 || !l.lie.CompareAndSwap(true, false) {
			fn(changes, rev)
			return
		}
		fn(nil, rev)
		l.lied.Store(rev)
		close(l.held)
		select {
		case <-l.release:
		case <-ctx.Done():
			return
		}
		fn(changes, rev)
	})
}

// A replica whose store delivers a change after reporting its revision
// complete (so it has served views at that revision without the change)
// loads its copy again, past every version it served, so every node gets a
// full snapshot: the node whose view went past the change gets it, though
// the key never changes again.
func TestStoreChangeBehindItsRevisionHeals(t *testing.T) {
	ms := NewMemoryStore()
	stA := ms.Session()
	stB := &laggingStore{Store: ms.Session(), held: make(chan struct{}), release: make(chan struct{})}
	defer stA.Close()
	defer stB.Close()
	sA := startServer(t, "", storeOpts(stA))
	sB := startServer(t, "", storeOpts(stB))
	cfg := ClientConfig{Interval: fastInterval}
	writer := startNode(t, sA.Addr().String(), cfg)
	reader := startNode(t, sB.Addr().String(), cfg)
	writer.c.SetSharedData("k", 1)
	waitFor(t, 10*time.Second, "the reader sees k = 1", func() bool { return sharedIs(reader.c.View(), "k", 1) })

	stB.lie.Store(true)
	writer.c.SetSharedData("k", 2)
	select {
	case <-stB.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the write never reached the second replica's watch")
	}
	waitFor(t, 10*time.Second, "the reader's view past the held change", func() bool {
		_, ver := reader.c.View().Version()
		return ver >= uint64(stB.lied.Load())
	})
	if !sharedIs(reader.c.View(), "k", 1) {
		t.Fatal("the reader saw the held change")
	}
	close(stB.release)
	waitFor(t, 10*time.Second, "the second replica loads its copy again, past the versions it served", func() bool {
		sB.mu.Lock()
		defer sB.mu.Unlock()
		a := sB.apps[""]
		return a != nil && a.horizon > uint64(stB.lied.Load())
	})
	waitFor(t, 10*time.Second, "the reader's view heals (k = 2)", func() bool { return sharedIs(reader.c.View(), "k", 2) })
}

// A view that went past a change it never got (its MARS handed out a
// version, then logged a change at it, as a replica whose copy was catching
// up did) is not healed by deltas, which start at its version. After MARS
// was silent and is back, the look-back report brings the change, though
// the key never changes again.
//
// The late change must be logged after the node's view went past it and
// before the look-back, which comes 2 to 3 Intervals after MARS is back: an
// outage after which the test was too slow for that (a stalled machine) is
// tried again.
func TestLookBackHealsAViewPastAChange(t *testing.T) {
	net := faultnet.New(3)
	conn, err := net.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := fastOpts()
	opts.OfflineAfter, opts.RemoveAfter = 10*time.Second, 20*time.Second // no change of its own while cut off
	opts.Transport = rudp.Config{RetryInterval: 100 * time.Millisecond, RetryTimeout: 500 * time.Millisecond}
	s, err := NewServer(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var logs syncbuf.Buffer
	interval := time.Second
	n := memNode(t, net, s.Addr().String(), ClientConfig{Interval: interval, InTouchSpan: 3 * interval / 2,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the node's log:\n%s", logs.String())
		}
	})
	n.c.SetSharedData("k", 1)
	waitFor(t, 10*time.Second, "k = 1", func() bool { return sharedIs(n.c.View(), "k", 1) })

	for outage := 1; ; outage++ {
		// A loaded machine may have made the node lose MARS before: count
		// from what the log holds now.
		lost := strings.Count(logs.String(), "lost MARS")
		net.Partition(n.tr.LocalAddr(), s.Addr())
		waitFor(t, 10*time.Second, "the node lost MARS", func() bool { return strings.Count(logs.String(), "lost MARS") > lost })
		s.mu.Lock()
		a := s.apps[""]
		*a.clock++ // a version with no change, which the node will get
		a.ver = *a.clock
		v := a.ver
		s.mu.Unlock()
		healed := time.Now()
		net.Heal(n.tr.LocalAddr(), s.Addr())
		waitFor(t, 10*time.Second, "the view at the empty version", func() bool {
			_, ver := n.c.View().Version()
			return ver >= v
		})
		s.mu.Lock()
		inTime := time.Since(healed) < 2*interval // the look-back is not asked yet
		if inTime {
			a.setKeyAt("k", 2, v) // the change comes late, at a version the view holds
		}
		s.mu.Unlock()
		if inTime {
			break
		}
		if outage == 5 {
			t.Fatal("five outages in a row, the test took longer than the look-back's delay")
		}
		t.Logf("outage %d: the view reached the empty version %v after MARS was back, too late for the test; again", outage, time.Since(healed))
	}
	if !sharedIs(n.c.View(), "k", 1) {
		t.Fatal("the view got the late change at once")
	}
	waitFor(t, 10*time.Second, "the view heals (k = 2)", func() bool { return sharedIs(n.c.View(), "k", 2) })
}

// gatedStore holds every Update while open is not closed (the store
// away), or with fail set refuses it at once (the store unreachable).
type gatedStore struct {
	Store
	mu   sync.Mutex
	open chan struct{} // closed: updates go through
	fail bool
}

var errGated = errors.New("store unreachable (test)")

func (g *gatedStore) Update(ctx context.Context, keys []StoreKey, fn func([]StoreRecord) ([]StoreWrite, error)) (int64, error) {
	g.mu.Lock()
	open, fail := g.open, g.fail
	g.mu.Unlock()
	select {
	case <-open:
	default:
		if fail {
			return 0, errGated
		}
		select {
		case <-open:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return g.Store.Update(ctx, keys, fn)
}

// close makes the store go away; the returned func brings it back.
func (g *gatedStore) close(fail bool) (reopen func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open, g.fail = make(chan struct{}), fail
	return sync.OnceFunc(func() { close(g.open) })
}

// A replica whose store was away has a backlog of each node's reports:
// it answers the latest of each and skips those that waited long with a
// newer one behind, and every add still applies exactly once.
func TestStoreBacklogSkipsSupersededReports(t *testing.T) {
	st := &gatedStore{Store: NewMemoryStore().Session(), open: make(chan struct{})}
	close(st.open)
	defer st.Close()
	s := startServer(t, "", storeOpts(st))
	n := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	n.c.AddSharedData("k", 1)
	waitFor(t, 10*time.Second, "k = 1", func() bool { return sharedIs(n.c.View(), "k", 1) })

	reopen := st.close(false)
	defer reopen()
	adds := 1
	for start := time.Now(); time.Since(start) < 2*storeCatchUp; time.Sleep(10 * time.Millisecond) {
		n.c.AddSharedData("k", 1)
		adds++
	}
	reopen()
	waitFor(t, 10*time.Second, "every add applied once", func() bool { return sharedIs(n.c.View(), "k", int16(adds)) })
	if s.Stats().Skipped == 0 {
		t.Fatal("no report skipped")
	}
	t.Logf("%d adds; %d replies skipped", adds, s.Stats().Skipped)
}

// While the store fails, the nodes a replica cannot answer are not listed
// offline or removed once it is back: their silence counts from the last
// failed store call.
func TestStoreAwayRemovesNoNode(t *testing.T) {
	st := &gatedStore{Store: NewMemoryStore().Session(), open: make(chan struct{})}
	close(st.open)
	defer st.Close()
	s := startServer(t, "", storeOpts(st)) // OfflineAfter 300 ms, RemoveAfter 900 ms
	cfg := ClientConfig{Interval: fastInterval}
	n := startNode(t, s.Addr().String(), cfg)
	obs := startNode(t, s.Addr().String(), cfg)
	waitFor(t, 10*time.Second, "both listed", func() bool { return hasNode(obs.c.View(), n.c.Addr(), online) })

	watched := keepsOnline(obs.c.View(), n.c.Addr())
	reopen := st.close(true)
	defer reopen()
	adds := 0 // reports with changes go to the workers, whose writes fail
	for start := time.Now(); time.Since(start) < 2*s.opts.RemoveAfter; time.Sleep(10 * time.Millisecond) {
		n.c.AddSharedData("k", 1)
		adds++
	}
	reopen()
	waitFor(t, 10*time.Second, "every add applied", func() bool { return sharedIs(obs.c.View(), "k", int16(adds)) })
	waitFor(t, 10*time.Second, "RemoveAfter past the last failed write", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.now()-s.st.failedAt > int64(s.opts.RemoveAfter+s.opts.OfflineAfter)
	})
	if m := watched(); m != "" {
		t.Fatal("the observer's view:", m)
	}
}

// keepsOnline checks every 2 ms that v lists addr online, until the
// returned stop is called; stop returns how it was listed the first time
// it was not ("" if never).
func keepsOnline(v *View, addr string) (stop func() string) {
	quit, done := make(chan struct{}), make(chan struct{})
	var first string
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if n, ok := v.Node(addr); (!ok || n.Status != StatusOnline) && first == "" {
				first = fmt.Sprintf("%s listed as %v (present %v)", addr, n.Status, ok)
			}
		}
	}()
	return func() string {
		close(quit)
		<-done
		return first
	}
}

// countingStore counts Update calls.
type countingStore struct {
	Store
	updates atomic.Int64
}

func (c *countingStore) Update(ctx context.Context, keys []StoreKey, fn func([]StoreRecord) ([]StoreWrite, error)) (int64, error) {
	c.updates.Add(1)
	return c.Store.Update(ctx, keys, fn)
}

// A report of many changes to a few keys (a node cut off from MARS for a
// while) is one transaction; changes to more than storeChunk keys take
// more.
func TestStoreWriteChunksByKeys(t *testing.T) {
	st := &countingStore{Store: NewMemoryStore().Session()}
	defer st.Close()
	s := startServer(t, "", storeOpts(st))
	addr, ack := "127.0.0.1:9", uint64(5)
	info := &nodeInfo{Type: "t", Status: StatusOnline}
	if _, _, _, _, err := s.storeWrite(&report{Addr: addr, Inc: 7, Info: info, Seq: ack}, StoreNode, 0, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		keys, ops int
		want      int64 // transactions
	}{{2, 1000, 1}, {storeChunk - 2, 1000, 1}, {storeChunk - 1, storeChunk - 1, 2}, {300, 300, 4}} {
		r := &report{Addr: addr, Inc: 7, From: ack, Seq: ack + uint64(tc.ops), Ops: spreadAdds(ack, ack+uint64(tc.ops), tc.keys)}
		before := st.updates.Load()
		_, got, _, _, err := s.storeWrite(r, StoreNode, 0, nil)
		if err != nil || got != r.Seq {
			t.Fatalf("%d changes to %d keys: ack %d, %v; want %d", tc.ops, tc.keys, got, err, r.Seq)
		}
		if n := st.updates.Load() - before; n != tc.want {
			t.Errorf("%d changes to %d keys: %d transactions, want %d", tc.ops, tc.keys, n, tc.want)
		}
		ack = got
	}
	if got, want := storedSum(t, st), fmt.Sprint(ack-5); got != want {
		t.Fatalf("stored sum %s, want %s (every change once)", got, want)
	}
}
