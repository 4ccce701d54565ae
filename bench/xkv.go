package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mars/etcdstore"
	"github.com/marsmesh/marsmesh/mesh"
)

// The xkv suite (opt-in: -suite xkv): the cluster key-value store across
// processes, beside etcd's own client on the same etcd and NATS KV
// (JetStream, file storage). Servers run in processes of their own: an
// etcd (the Debian binary, ETCD_BIN or etcd on PATH), a MARS in memory
// and a MARS over that etcd (children), a nats-server with JetStream
// (child). The clients are in the bench process: a marsmesh guest node per
// MARS, an etcd clientv3 client, a NATS connection. Each system puts (or
// gets) 64 B values to 1,000 keys: p50/p99 at c=1, and the rate at c=16.
// Rounds rotate the order of the systems; figures are medians of rounds.

// Child kinds of the suite (see serve.go):
//
//	mars-etcd HOST ENDPOINT   MARS over etcd at ENDPOINT; READY host:port
//	nats-js HOST DIR          nats-server with JetStream in DIR; READY client URL

const (
	sysKVMem  = "marsmesh-kv-mem"
	sysKVEtcd = "marsmesh-kv-etcd"
	sysEtcd   = "etcd"
	sysNATSKV = "nats-kv"
	kvBenchN  = 1000 // keys
)

// kvTarget is one system's client end: an rpcTarget whose Call puts or
// gets the next key.
type kvTarget struct {
	put, get func(ctx context.Context, key string, v []byte) error
	op       string // "put" or "get"
	next     atomic.Int64
	close    func() error
}

func (t *kvTarget) Prepare(int) error { return nil }

func (t *kvTarget) Call(req []byte) error {
	key := fmt.Sprintf("bench/%d", t.next.Add(1)%kvBenchN)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if t.op == "get" {
		return t.get(ctx, key, nil)
	}
	return t.put(ctx, key, req)
}

func (t *kvTarget) Close() error { return t.close() }

// serveKV starts the suite's children; ok is false for another kind.
func serveKV(kind string, arg func(int) string) (ready string, stop func() error, ok bool, err error) {
	switch kind {
	case "mars-etcd":
		st, err := etcdstore.New(etcdstore.Options{Endpoints: []string{arg(2)}, Prefix: "/bench-kv/", Logger: quiet})
		if err != nil {
			return "", nil, true, err
		}
		srv, err := mars.Listen(arg(1)+":0", mars.ServerOptions{Logger: quiet, Store: st})
		if err != nil {
			st.Close()
			return "", nil, true, err
		}
		return srv.Addr().String(), func() error { return errors.Join(srv.Close(), st.Close()) }, true, nil
	case "nats-js":
		ns, err := server.NewServer(&server.Options{Host: arg(1), Port: -1, NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: arg(2)})
		if err != nil {
			return "", nil, true, err
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			return "", nil, true, errors.New("nats-server with JetStream not ready in 10 s")
		}
		return ns.ClientURL(), func() error { stopNATSServer(ns); return nil }, true, nil
	}
	return "", nil, false, nil
}

// startEtcd runs the etcd binary on free loopback ports with a fresh data
// directory; the returned function kills it and removes the directory.
func startEtcd() (endpoint string, stop func(), err error) {
	bin := os.Getenv("ETCD_BIN")
	if bin == "" {
		if bin, err = exec.LookPath("etcd"); err != nil {
			return "", nil, errors.New("no etcd binary (apt-get install etcd-server, or set ETCD_BIN)")
		}
	}
	port := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	dir, err := os.MkdirTemp("", "mmbench-etcd-")
	if err != nil {
		return "", nil, err
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", port()), fmt.Sprintf("http://127.0.0.1:%d", port())
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default="+peer)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+os.Getenv("ETCD_UNSUPPORTED_ARCH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(dir)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err = cli.Put(ctx, "/bench-ready", "1")
		cancel()
		cli.Close()
	}
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("etcd did not answer: %w", err)
	}
	return client, stop, nil
}

// kvNodeTarget is a marsmesh guest node using the MARS at marsAddr.
func kvNodeTarget(marsAddr string) (*kvTarget, error) {
	host, port, _ := net.SplitHostPort(marsAddr)
	cfg := config.Default()
	cfg.Address, cfg.Port, cfg.MarsAddress, cfg.MarsPort = "127.0.0.1", "0", host, port
	n, err := mesh.New(cfg, mesh.AsGuest(), mesh.WithLogger(quiet))
	if err != nil {
		return nil, err
	}
	select {
	case <-n.Ready():
	case <-time.After(10 * time.Second):
		n.Shutdown()
		return nil, errors.New("no first sync with MARS")
	}
	kv := n.KV()
	return &kvTarget{
		put: func(ctx context.Context, k string, v []byte) error {
			_, err := kv.Put(ctx, k, v, mesh.PutOptions{})
			return err
		},
		get: func(ctx context.Context, k string, _ []byte) error {
			_, err := kv.Get(ctx, k)
			return err
		},
		close: n.Shutdown,
	}, nil
}

func etcdTarget(ep string) (*kvTarget, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	return &kvTarget{
		put: func(ctx context.Context, k string, v []byte) error {
			_, err := cli.Put(ctx, "/etcd-bench/"+k, string(v))
			return err
		},
		get: func(ctx context.Context, k string, _ []byte) error {
			r, err := cli.Get(ctx, "/etcd-bench/"+k)
			if err == nil && len(r.Kvs) != 1 {
				err = errors.New("key not found")
			}
			return err
		},
		close: cli.Close,
	}, nil
}

func natsKVTarget(url string) (*kvTarget, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var kv jetstream.KeyValue
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench", Storage: jetstream.FileStorage})
		cancel()
		if err == nil {
			return &kvTarget{
				put: func(ctx context.Context, k string, v []byte) error {
					_, err := kv.Put(ctx, strings.ReplaceAll(k, "/", "."), v)
					return err
				},
				get: func(ctx context.Context, k string, _ []byte) error {
					_, err := kv.Get(ctx, strings.ReplaceAll(k, "/", "."))
					return err
				},
				close: func() error { nc.Close(); return nil },
			}, nil
		}
	}
	nc.Close()
	return nil, err
}

type kvSys struct {
	key, name string
	t         *kvTarget
	procs     []*child
}

// suiteXKV measures the key-value stores.
func (b *bench) suiteXKV() {
	ep, stopEtcd, err := startEtcd()
	if err != nil {
		logf("xkv suite skipped: %v", err)
		b.add(Record{Suite: "xkv", System: sysEtcd, Name: "etcd", Err: "skipped: " + err.Error()})
		return
	}
	defer stopEtcd()
	var systems []*kvSys
	defer func() {
		for _, s := range systems {
			s.t.Close()
			for _, c := range s.procs {
				c.Close()
			}
		}
	}()
	start := func(key, name string, mk func() (*kvTarget, []*child, error)) {
		if b.skipSystem(key) {
			return
		}
		t, procs, err := mk()
		if err != nil {
			logf("xkv: %s: %v", name, err)
			b.add(Record{Suite: "xkv", System: key, Name: name, Err: err.Error()})
			for _, c := range procs {
				c.Close()
			}
			return
		}
		systems = append(systems, &kvSys{key: key, name: name, t: t, procs: procs})
	}
	viaMars := func(args ...string) func() (*kvTarget, []*child, error) {
		return func() (*kvTarget, []*child, error) {
			c, err := startChild("", args...)
			if err != nil {
				return nil, nil, err
			}
			t, err := kvNodeTarget(c.ready)
			return t, []*child{c}, err
		}
	}
	start(sysKVMem, "marsmesh KV, MARS in memory", viaMars("mars", "127.0.0.1"))
	start(sysKVEtcd, "marsmesh KV, MARS on etcd", viaMars("mars-etcd", "127.0.0.1", ep))
	start(sysEtcd, "etcd clientv3", func() (*kvTarget, []*child, error) {
		t, err := etcdTarget(ep)
		return t, nil, err
	})
	jsDir, err := os.MkdirTemp("", "mmbench-js-")
	if err == nil {
		defer os.RemoveAll(jsDir)
		start(sysNATSKV, "NATS KV (JetStream, file)", func() (*kvTarget, []*child, error) {
			c, err := startChild("", "nats-js", "127.0.0.1", jsDir)
			if err != nil {
				return nil, nil, err
			}
			t, err := natsKVTarget(c.ready)
			return t, []*child{c}, err
		})
	}
	rounds := max(b.plan.xrounds, 1)
	count := min(b.plan.latCount, 5000) // per round and system; each round also stops at duration/rounds
	for _, op := range []string{"put", "get"} {
		for _, conc := range []int{1, 16} {
			for _, s := range systems { // warm up; gets need the keys
				s.t.op = "put"
				runClosedLoop(s.t, 64, 16, kvBenchN, 30*time.Second, false)
				s.t.op = op
				runClosedLoop(s.t, 64, conc, 200, 5*time.Second, false)
			}
			figs := make([][]RoundFig, len(systems))
			accs := make([]runResult, len(systems))
			turns(len(systems), rounds, func(i, _ int) {
				r := runClosedLoop(systems[i].t, 64, conc, count, b.plan.duration, true)
				accs[i].add(r)
				lat := Summarize(slices.Clone(r.Lat))
				rate := 0.0
				if r.Elapsed > 0 {
					rate = float64(r.Done) / r.Elapsed.Seconds()
				}
				figs[i] = append(figs[i], RoundFig{P50: lat.P50, P99: lat.P99, Rate: rate})
			})
			for i, s := range systems {
				rec := rpcRecord("xkv", rpcSystem{key: s.key + "-" + op, name: s.name + ", " + op}, 64, conc, accs[i])
				rec.Rounds = figs[i]
				rec.Lat.P50, rec.Lat.P99, rec.Rate = medianOf(figs[i], func(f RoundFig) float64 { return f.P50 }),
					medianOf(figs[i], func(f RoundFig) float64 { return f.P99 }), medianOf(figs[i], func(f RoundFig) float64 { return f.Rate })
				b.add(rec)
			}
		}
	}
}

func medianOf(figs []RoundFig, f func(RoundFig) float64) float64 {
	v := make([]float64, 0, len(figs))
	for _, x := range figs {
		v = append(v, f(x))
	}
	slices.Sort(v)
	if len(v) == 0 {
		return nan
	}
	return v[len(v)/2]
}

// xkvTable writes the suite's table: per system and operation, p50/p99
// at c=1 and the rate at c=16.
func xkvTable(w func(string, ...any), run Run) {
	rs := recs(run, "xkv")
	if len(rs) == 0 {
		return
	}
	w("## Cluster key-value store (across processes)\n\n")
	w("`go run . -suite xkv`: 64 B values over 1,000 keys; every server in a process of its own (etcd, MARS in memory,\n")
	w("MARS over that etcd, nats-server with JetStream on file storage), the clients in the bench process. Medians of\n")
	w("%d rounds. A marsmesh put is applied exactly once (it carries the node's write number) and answered once the\n", max(len(rs[0].Rounds), 1))
	w("MARS it reached holds it; over etcd that is one conditional etcd transaction (the key, and the write's result\n")
	w("record for resends) and the replica's watch bringing it back to its copy.\n\n")
	w("| system | p50 c=1 | p99 c=1 | rate c=16 |\n| --- | ---: | ---: | ---: |\n")
	for _, r := range rs {
		if r.Conc != 1 {
			continue
		}
		if r.Err != "" {
			w("| %s | %s | | |\n", r.Name, r.Err)
			continue
		}
		rate := "–"
		if hi := run.find("xkv", r.System, r.Payload, 16, 0, 0); hi != nil && hi.Err == "" {
			rate = fmt.Sprintf("%.0f/s", hi.Rate)
		}
		w("| %s | %.0f µs | %.0f µs | %s |\n", r.Name, r.Lat.P50, r.Lat.P99, rate)
	}
	w("\n")
}
