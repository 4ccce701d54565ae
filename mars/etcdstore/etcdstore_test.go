package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/marsmesh/marsmesh/internal/etcdtest"
	"github.com/marsmesh/marsmesh/internal/leaktest"
	"github.com/marsmesh/marsmesh/mars"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

// quiet discards logs unless ETCDSTORE_TEST_LOG is set.
func quiet() *slog.Logger {
	if os.Getenv("ETCDSTORE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newStore(t testing.TB, ep string, prefix string) *Store {
	t.Helper()
	s, err := New(Options{Endpoints: []string{ep}, Prefix: prefix, SessionTTL: 2 * time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestUnreachableNamesEndpoints(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	start := time.Now()
	_, err = New(Options{Endpoints: []string{ep}, DialTimeout: 500 * time.Millisecond, Logger: quiet()})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), ep) {
		t.Fatalf("New with etcd down: %v; want ErrUnreachable naming %s", err, ep)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("New waited %v with DialTimeout 500ms", d)
	}
	for _, bad := range [][]string{nil, {"127.0.0.1:2379"}, {"ftp://x"}, {"http://"}} {
		if err := CheckEndpoints(bad); err == nil {
			t.Errorf("CheckEndpoints(%q) accepted", bad)
		}
	}
}

// Against the real etcd (Debian etcd-server, 3.4): the ID is shared, Update
// is atomic under contention from two clients, Watch delivers puts and
// deletes in order, and a closed session's records expire.
func TestStoreOnEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	a := newStore(t, e.Endpoint, "/t1/")
	b := newStore(t, e.Endpoint, "/t1/")
	if a.ID() == 0 || a.ID() != b.ID() {
		t.Fatalf("IDs %x and %x", a.ID(), b.ID())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[mars.StoreKey]mars.StoreRecord{}
	var watchRev int64
	_, rev0, err := a.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- a.Watch(ctx, rev0, func(recs []mars.StoreRecord, rev int64) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range recs {
				seen[r.StoreKey] = r
			}
			watchRev = rev
		})
	}()

	key := mars.StoreKey{App: "game/1", Kind: mars.StoreShared, Name: "count"}
	const each = 100
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := s.Update(ctx, []mars.StoreKey{key}, func(cur []mars.StoreRecord) ([]mars.StoreWrite, error) {
					v := int16(0)
					if cur[0].Rev != 0 {
						var err error
						if v, err = mars.DecodeStoredValue(cur[0].Value); err != nil {
							return nil, err
						}
					}
					return []mars.StoreWrite{{StoreKey: key, Value: mars.EncodeStoredValue(v + 1)}}, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	recs, rev, err := b.Load(ctx)
	if err != nil || len(recs) != 1 || string(recs[0].Value) != fmt.Sprint(2*each) || recs[0].StoreKey != key {
		t.Fatalf("after %d adds from two clients: %+v, %v", 2*each, recs, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		r, got := seen[key], watchRev
		mu.Unlock()
		if got >= rev && string(r.Value) == fmt.Sprint(2*each) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch at %d (%q), store at %d", got, r.Value, rev)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A progress request reports the revision even with no change under
	// the prefix (a write elsewhere moves it).
	other, err := a.cli.Put(ctx, "/elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Progress(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		got := watchRev
		mu.Unlock()
		if got >= other.Header.Revision {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress: watch at %d, want %d", got, other.Header.Revision)
		}
		a.Progress(ctx)
		time.Sleep(50 * time.Millisecond)
	}

	// b's session record expires after b stops (SessionTTL 2 s).
	node := mars.StoreKey{App: "", Kind: mars.StoreNode, Name: "127.0.0.1:9"}
	rec := mars.EncodeStoredNode(&mars.StoredNode{Inc: 1, Status: mars.StatusOnline, Alive: true})
	if _, err := b.Update(ctx, []mars.StoreKey{node}, func([]mars.StoreRecord) ([]mars.StoreWrite, error) {
		return []mars.StoreWrite{{StoreKey: node, Value: rec, Session: true}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	for deadline := time.Now().Add(20 * time.Second); ; {
		mu.Lock()
		r, ok := seen[node]
		mu.Unlock()
		if ok && r.Deleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session record not expired: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-watchDone
}

func TestKeyLayout(t *testing.T) {
	s := &Store{opts: Options{Prefix: "/p/"}}
	for _, k := range []mars.StoreKey{
		{App: "", Kind: mars.StoreNode, Name: "127.0.0.1:1"},
		{App: "a/b%c", Kind: mars.StoreShared, Name: "k/ey"},
		{App: "é", Kind: mars.StoreGuest, Name: "[::1]:5"},
	} {
		got, ok := s.parse([]byte(s.key(k)))
		if !ok || got != k {
			t.Errorf("%+v -> %q -> %+v, %v", k, s.key(k), got, ok)
		}
	}
	for _, bad := range []string{"/p/id", "/p/sync", "/p/x/a/b", "/q/n/a/b", "/p/n/ab", "/p/n/%zz/b"} {
		if _, ok := s.parse([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// Watch never reports a revision before it delivered every change up to
// it, also when progress is asked for while the watch is still catching up
// (etcd 3.4.23 answered such a request with its current revision at once,
// ahead of the events: etcd-io/etcd issue 15220). A replica hands that
// revision to nodes as their view's version.
func TestWatchNeverRunsAhead(t *testing.T) {
	e := etcdtest.Start(t)
	s := newStore(t, e.Endpoint, "/t3/")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, rev0, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// History to catch up with: 500 revisions under the prefix.
	key := mars.StoreKey{App: "a", Kind: mars.StoreShared, Name: "k"}
	var last int64
	for i := 0; i < 500; i++ {
		if last, err = s.Update(ctx, []mars.StoreKey{key}, func([]mars.StoreRecord) ([]mars.StoreWrite, error) {
			return []mars.StoreWrite{{StoreKey: key, Value: mars.EncodeStoredValue(int16(i))}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var reported, seen int64
	var bad []string
	caught := make(chan struct{})
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- s.Watch(ctx, rev0, func(recs []mars.StoreRecord, rev int64) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range recs {
				if r.Rev <= reported && len(bad) < 5 {
					bad = append(bad, fmt.Sprintf("change at %d after revision %d was reported", r.Rev, reported))
				}
				if r.Rev >= last && seen < last {
					close(caught)
				}
				seen = max(seen, r.Rev)
			}
			reported = max(reported, rev)
		})
	}()
	// Ask for progress while the watch catches up.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := s.Progress(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-caught:
		case <-time.After(5 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("the watch did not reach revision %d", last)
			}
			continue
		}
		break
	}
	cancel()
	<-watchDone
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("the watch ran ahead of its events: %s", strings.Join(bad, "; "))
	}
}

// Records on a lease the client gave up (etcd away longer than its TTL)
// move to the new lease, keeping their value, so they do not expire with
// the old one; a record rewritten meanwhile stays as it is.
func TestLostLeaseRecordsMove(t *testing.T) {
	e := etcdtest.Start(t)
	s := newStore(t, e.Endpoint, "/t4/")
	ctx := context.Background()
	put := func(name, val string) mars.StoreKey {
		k := mars.StoreKey{App: "a", Kind: mars.StoreNode, Name: name}
		if _, err := s.Update(ctx, []mars.StoreKey{k}, func([]mars.StoreRecord) ([]mars.StoreWrite, error) {
			return []mars.StoreWrite{{StoreKey: k, Value: []byte(val), Session: true}}, nil
		}); err != nil {
			t.Fatal(err)
		}
		return k
	}
	for i := range 100 {
		put(fmt.Sprint("127.0.0.1:", i), fmt.Sprint("v", i))
	}
	lost := clientv3.LeaseID(s.lease.Load())
	if err := s.grant(ctx); err != nil {
		t.Fatal(err)
	}
	put("127.0.0.1:0", "rewritten") // on the new lease already
	s.moveRecords(lost)
	if _, err := s.cli.Revoke(ctx, lost); err != nil { // as if it expired
		t.Fatal(err)
	}
	resp, err := s.cli.Get(ctx, "/t4/n/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 100 {
		t.Fatalf("%d records left of 100", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		want := "v" + strings.TrimPrefix(string(kv.Key), "/t4/n/a/127.0.0.1:")
		if string(kv.Key) == "/t4/n/a/127.0.0.1:0" {
			want = "rewritten"
		}
		if string(kv.Value) != want || clientv3.LeaseID(kv.Lease) != clientv3.LeaseID(s.lease.Load()) {
			t.Fatalf("%s = %q on lease %x; want %q on %x", kv.Key, kv.Value, kv.Lease, want, s.lease.Load())
		}
	}
}
