package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/rudp"
)

// Liveness settings of the demo only, so a crash shows within seconds.
// The defaults are retryTimeout 3000 ms, retryInterval 1000 ms, a 1 s sync
// interval, and MARS offline/remove after 3 s/10 s.
const (
	demoType          = "game"
	demoRetryInterval = 250  // ms
	demoRetryTimeout  = 1000 // ms
	demoSyncInterval  = 200 * time.Millisecond
	demoOfflineAfter  = time.Second
	demoRemoveAfter   = 3 * time.Second

	// RPC IDs served only by the demo's in-process nodes.
	cmdFail uint16 = 100 // always fails with failMessage
	cmdSlow uint16 = 101 // waits until its context ends
)

const failMessage = "table 7 is full"

// demoKeyEnv passes the cluster key of `demo -key` to the child node (a
// variable of its own: a DIARKIS_MESH_KEY the user has set stays out of
// the demo).
const demoKeyEnv = "MARSMESH_DEMO_KEY"

// demoConfig is the configuration of every demo node: loopback, any free
// port, the demo's MARS and short liveness limits. It ignores DIARKIS_*
// variables, so the demo runs the same everywhere.
func demoConfig(marsHost, marsPort string) config.Mesh {
	cfg := config.Default()
	cfg.Address = "127.0.0.1"
	cfg.Port = "0"
	cfg.MarsAddress, cfg.MarsPort = marsHost, marsPort
	cfg.RetryInterval = demoRetryInterval
	cfg.RetryTimeout = demoRetryTimeout
	return cfg
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", "[-nodes 5] [-key]",
		"Starts a MARS and -nodes nodes in this process, plus one node in a child process, all\n"+
			"on 127.0.0.1 with free ports; exercises RPC (echo, handler error, timeout), Send,\n"+
			"USend, SendMany, shared data, node values, a guest and health checks, a node killed\n"+
			"with SIGKILL and a graceful shutdown; prints a report. Exit 0 only if every step\n"+
			"passed. Liveness limits are shortened for the demo (see the report's header).")
	size := fs.Int("nodes", 5, "number of in-process nodes (2..32)")
	verbose := fs.Bool("v", false, "log the nodes' warnings and info to stderr")
	adminAddr := fs.String("admin", "", "serve MARS's admin endpoint (dashboard, metrics of MARS and of every demo node, labelled node=...) on `host:port`")
	keyed := fs.Bool("key", false, "run the cluster with a fresh random cluster key: every datagram authenticated and encrypted")
	hold := fs.Duration("hold", 0, "after the report, keep MARS and the remaining nodes running this long (or until SIGINT), e.g. to look at -admin")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *size < 2 || *size > 32 {
		return usageError(stderr, fs.Name(), fmt.Errorf("-nodes %d: want 2..32", *size))
	}
	if *adminAddr != "" {
		if _, _, err := net.SplitHostPort(*adminAddr); err != nil {
			return usageError(stderr, fs.Name(), fmt.Errorf("-admin %q: want host:port", *adminAddr))
		}
	}
	if *hold < 0 {
		return usageError(stderr, fs.Name(), fmt.Errorf("-hold %v: must not be negative", *hold))
	}
	level := "error"
	if *verbose {
		level = "info"
	}
	log, _ := newLogger(stderr, level)
	ctx, cancel := context.WithCancel(ctx)
	d := &demo{ctx: ctx, cancel: cancel, log: log, size: *size, slow: make(chan time.Duration, 4)}
	defer d.teardown()
	keyLine := "No cluster key (-key runs the demo with one)."
	if *keyed {
		k, err := rudp.GenerateKey()
		if err != nil {
			return failure(stderr, fs.Name(), err)
		}
		d.key = config.EncodeKey(k)
		keyLine = "Cluster key: a fresh random one; every datagram is authenticated and encrypted."
	}

	r := newReport(stdout)
	r.header(
		fmt.Sprintf("marsmesh demo: a MARS and %d nodes in this process, 1 node in a child process, on 127.0.0.1.", d.size),
		fmt.Sprintf("Liveness shortened for the demo [defaults]: retryTimeout %d ms [3000], retryInterval %d ms [1000],",
			demoRetryTimeout, demoRetryInterval),
		fmt.Sprintf("sync every %v [1s], MARS lists a silent node offline after %v [3s] and removes it after %v [10s].",
			demoSyncInterval, demoOfflineAfter, demoRemoveAfter),
		"Every message crosses loopback UDP, also between nodes of this process.",
		keyLine)
	steps := []struct {
		name string
		run  func() (string, error)
	}{
		{"cluster up", d.up},
		{"RPC echo", d.rpcEcho},
		{"RPC handler error", d.rpcError},
		{"RPC timeout", d.rpcTimeout},
		{"Send", d.send},
		{"USend", d.usend},
		{"SendMany (limit 2)", d.sendMany},
		{"shared data", d.sharedData},
		{"node values, status", d.values},
		{"guest, health check", d.guestHealth},
		{"node killed", d.kill},
		{"killed node leaves", d.leaves},
		{"graceful shutdown", d.graceful},
	}
	for i, s := range steps {
		if !r.step(s.name, s.run) && i == 0 {
			for _, rest := range steps[1:] {
				r.skip(rest.name, "the cluster did not come up")
			}
			break
		}
		if i == 0 && *adminAddr != "" {
			adm, err := d.startAdmin(*adminAddr)
			if err != nil {
				return failure(stderr, fs.Name(), err)
			}
			defer adm.Close()
			fmt.Fprintf(stdout, "admin endpoint: dashboard http://%s/ , metrics http://%s/metrics\n", adm.Addr(), adm.Addr())
		}
	}
	ok := r.finish()
	if *hold > 0 {
		fmt.Fprintf(stdout, "holding the cluster for %v (SIGINT to stop)\n", *hold)
		select {
		case <-ctx.Done():
		case <-time.After(*hold):
		}
	}
	if ok {
		return exitOK
	}
	if tail := d.childErr.String(); tail != "" {
		fmt.Fprintf(stderr, "child node's stderr:\n%s", tail)
	}
	return exitFail
}

// demo is the running demo cluster.
type demo struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	size   int
	key    string         // cluster key (config.EncodeKey), or "" for none
	wg     sync.WaitGroup // the kill step's watcher

	srv   *mars.Server
	cfg   config.Mesh
	nodes []*mesh.Node
	hs    []*handlers
	guest *mesh.Node
	slow  chan time.Duration // how long a cmdSlow handler waited for its context to end

	child     *exec.Cmd
	childIn   io.Closer
	childDone chan struct{}  // closed once the child has exited and been reaped
	tombstone net.PacketConn // holds the killed child's port (see kill)
	childOut  syncbuf.Buffer
	childErr  syncbuf.Buffer
	childAddr string
	childPID  int

	failMu   sync.Mutex
	failures map[string]error // heard by node 0's OnSendFailure

	gone chan leaveTimes // the kill step's watcher reports here
}

type leaveTimes struct {
	offline, removed time.Duration // after the kill; 0 = not seen
	err              error
}

func (d *demo) addrs() []string {
	out := make([]string, len(d.nodes))
	for i, n := range d.nodes {
		out[i] = n.GetMyEndPoint()
	}
	return out
}

// waitFor polls cond every 2 ms until it holds, timeout passes or the
// demo is interrupted.
func (d *demo) waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if d.ctx.Err() != nil {
			return errors.New("interrupted")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// up starts MARS, the child node and the in-process nodes, and waits
// until every node lists all of them.
func (d *demo) up() (string, error) {
	var keys [][32]byte
	if d.key != "" {
		k, err := config.ParseKey(d.key)
		if err != nil {
			return "", err
		}
		keys = append(keys, k)
	}
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{
		OfflineAfter: demoOfflineAfter,
		RemoveAfter:  demoRemoveAfter,
		Logger:       d.log,
		Transport: rudp.Config{
			RetryInterval: demoRetryInterval * time.Millisecond,
			RetryTimeout:  demoRetryTimeout * time.Millisecond,
			Keys:          keys,
		},
	})
	if err != nil {
		return "", fmt.Errorf("start MARS: %w", err)
	}
	d.srv = srv
	host, port, _ := net.SplitHostPort(srv.Addr().String())
	d.cfg = demoConfig(host, port)
	d.cfg.MeshKey = d.key
	if err := d.startChild(); err != nil {
		return "", fmt.Errorf("start the child node: %w", err)
	}
	d.failures = map[string]error{}
	for i := range d.size {
		log := d.log.With("node", i)
		h := newHandlers(log)
		n, err := mesh.New(d.cfg, mesh.WithType(demoType), mesh.WithLogger(log), mesh.WithSyncInterval(demoSyncInterval),
			mesh.WithEndPoint(demoEndPoint(i)),
			mesh.WithValues(map[string]interface{}{"index": int64(i), "region": []string{"eu", "us"}[i%2]}))
		if err != nil {
			return "", fmt.Errorf("start node %d: %w", i, err)
		}
		d.nodes = append(d.nodes, n)
		d.hs = append(d.hs, h)
		if !h.register(n) || !d.registerDemoHandlers(n) {
			return "", fmt.Errorf("node %d: handler IDs taken", i)
		}
	}
	d.nodes[0].OnSendFailure(func(addr string, err error) {
		d.failMu.Lock()
		if d.failures[addr] == nil {
			d.failures[addr] = err
		}
		d.failMu.Unlock()
	})
	if err := d.waitFor(10*time.Second, "the child node prints its address", func() bool {
		return strings.Contains(d.childOut.String(), "\n")
	}); err != nil {
		return "", err
	}
	d.childAddr = strings.TrimSpace(d.childOut.String())
	want := d.size + 1
	if err := d.waitFor(10*time.Second, fmt.Sprintf("every node lists %d nodes", want), func() bool {
		for _, n := range d.nodes {
			if len(n.GetNodeAddresses(nil)) != want {
				return false
			}
		}
		return true
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("MARS %s; %d nodes here + 1 child process (pid %d, %s); every node lists %d",
		srv.Addr(), d.size, d.childPID, d.childAddr, want), nil
}

func demoEndPoint(i int) string { return fmt.Sprintf("198.51.100.%d:7000", i+1) }

// startChild starts the node the kill step crashes, as a child process
// of this same program.
func (d *demo) startChild() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, demoNodeCmd, "-mars", net.JoinHostPort(d.cfg.MarsAddress, d.cfg.MarsPort))
	cmd.Env = append(os.Environ(), demoKeyEnv+"="+d.key)
	cmd.Stdout = &d.childOut
	cmd.Stderr = &d.childErr
	in, err := cmd.StdinPipe() // the child exits when this closes, also if we die
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.child, d.childIn, d.childPID = cmd, in, cmd.Process.Pid
	d.childDone = make(chan struct{})
	go func() {
		cmd.Wait()
		close(d.childDone)
	}()
	return nil
}

func (d *demo) registerDemoHandlers(n *mesh.Node) bool {
	ok := n.HandleRPC(cmdFail, func([]byte, string) ([]byte, error) { return nil, errors.New(failMessage) })
	return n.HandleRPCWithContext(cmdSlow, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		start := time.Now()
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
			select {
			case d.slow <- time.Since(start):
			default:
			}
			return nil, ctx.Err()
		case <-t.C:
			return []byte("late"), nil
		}
	}) && ok
}

// teardown stops everything the demo started, in parallel.
func (d *demo) teardown() {
	d.cancel()
	d.wg.Wait()
	if d.child != nil {
		d.childIn.Close()
		d.child.Process.Kill()
		<-d.childDone
	}
	if d.tombstone != nil {
		d.tombstone.Close()
	}
	var wg sync.WaitGroup
	for _, n := range append(d.nodes, d.guest) {
		if n != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.Shutdown()
			}()
		}
	}
	wg.Wait()
	if d.srv != nil {
		d.srv.Close()
	}
}
