package mars

import (
	"fmt"
	"github.com/marsmesh/marsmesh/internal/ratelog"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/etcdtest"
	"github.com/marsmesh/marsmesh/rudp"
)

// TestScale measures one MARS process serving many simulated nodes. It
// runs only when MARS_SCALE lists node counts:
//
//	MARS_SCALE=1000,10000 MARS_SCALE_RESTART=1 go test -run=TestScale -v -timeout=20m ./mars
//
// MARS runs as a separate mars-server process, so its CPU time comes from
// /proc/PID/stat (utime+stime, at USER_HZ=100) and its memory from VmRSS in
// /proc/PID/status. The simulated nodes live in this process: they speak
// the real protocol over real loopback UDP, MARS_SCALE_PER_TRANSPORT (200)
// of them sharing one rudp transport (MARS identifies a node by the mesh
// address in its report and answers the source address). Each reports once
// a second, spread evenly over the second. A simulated node keeps no view
// of its own until a restart (see scale_restart_test.go): it reads the
// head of every sync, and the body of deltas only (to see the probe
// change). Registration is spread over MARS_SCALE_RAMP (default
// N × 10 ms), node i starting at RAMP × (i/N)², so the bytes of full
// snapshots per second (each new node gets the whole list, which grows with
// i) stay about even; every node gets its real full snapshot.
//
// Each figure is one log line starting with SUMMARY: the join (time from
// the last node's start until every node is listed, MARS CPU and bytes per
// join), the steady state over MARS_SCALE_WINDOW (10 s) after the cluster
// settles (MARS CPU in cores and per node, RSS, bytes per second per node
// each way, rudp packets per report counted on the node side, and that no
// version changed and no full snapshot went out: traffic is O(changes)),
// the time for a change on one node (a shared key and its type) to reach
// every node, and with MARS_SCALE_RESTART set a MARS restart: SIGKILL,
// changes while it is down, restart on its port (scaleRestart);
// MARS_SCALE_DATA runs MARS with -data DIR. With MARS_SCALE_ETCD set, MARS
// is two mars-server -store etcd replicas over a real etcd
// (internal/etcdtest): the join goes through etcd, and the replica serving
// every node is killed instead (scaleReplicaKill):
//
//	MARS_SCALE=10000 MARS_SCALE_ETCD=1 MARS_SCALE_RAMP=60s go test -run=TestScale -v -timeout=20m ./mars
//
// CI runs it at 1,000 nodes (.ci/run). Assertions are on correctness only
// (every node registered, the change reached every node, every view equal
// to MARS's after the restart), never on time.
func TestScale(t *testing.T) {
	spec := os.Getenv("MARS_SCALE")
	if spec == "" {
		t.Skip("set MARS_SCALE=1000,10000 to run the scale measurement")
	}
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > 50_000 {
			t.Fatalf("MARS_SCALE: %q is not a node count in 2..50000", f)
		}
		t.Run(fmt.Sprint(n), func(t *testing.T) { runScale(t, n) })
	}
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// simNode is one simulated node.
type simNode struct {
	addr    string
	inc     uint64
	tr      *rudp.Transport
	startAt time.Time

	mu         sync.Mutex
	info       nodeInfo // what it registers with
	marsInc    uint64
	ver        uint64
	seq        uint64
	needFull   bool
	registered bool
	pending    *report // a change to send with the next report
	rs         simRestart

	probeAt atomic.Int64 // unix ns when the probe change arrived
}

type simStats struct {
	reports, reportBytes, syncs, syncBytes, fulls, fullBytes atomic.Uint64
	buckets, bucketBytes, waits                              atomic.Uint64
}

type simCluster struct {
	mars  atomic.Pointer[netip.AddrPort] // where reports go (a replica kill moves them)
	sims  []*simNode
	byTr  map[*rudp.Transport][]*simNode
	byKey sync.Map // addr -> *simNode
	stats simStats
	stop  chan struct{}
	wg    sync.WaitGroup
	trs   []*rudp.Transport
	obs   simObserver             // sims[0]'s view, kept in full
	base  atomic.Pointer[simBase] // after a restart: the view every node kept

	probeKey  string
	probeVal  int16
	probeType string
	probeFrom string
}

func (c *simCluster) onMessage(from netip.AddrPort, kind byte, p []byte, _ bool) {
	if kind != KindSync {
		return
	}
	h, r, fields, err := decodeSyncHead(p)
	if err != nil {
		return
	}
	v, ok := c.byKey.Load(h.Addr)
	if !ok {
		return
	}
	s := v.(*simNode)
	c.stats.syncs.Add(1)
	c.stats.syncBytes.Add(uint64(len(p)))
	full := h.Flags&syncFull != 0
	switch {
	case h.Flags&syncBuckets != 0:
		c.stats.buckets.Add(1)
		c.stats.bucketBytes.Add(uint64(len(p)))
	case full:
		c.stats.fulls.Add(1)
		c.stats.fullBytes.Add(uint64(len(p)))
	case h.Flags&syncWait != 0:
		c.stats.waits.Add(1)
	}
	if s == c.sims[0] {
		c.obs.take(h, r, fields)
	}
	base := c.base.Load()
	var body *syncBody
	if fields > 0 && (base != nil || !full && s.probeAt.Load() == 0 && c.probeKey != "") {
		var b syncBody
		if decodeSyncBody(&r, fields, &b) == nil {
			body = &b
		}
	}
	if body != nil && !full && s.probeAt.Load() == 0 && c.probeKey != "" {
		key, typ := false, c.probeType == ""
		for _, e := range body.Keys {
			key = key || e == (kv{c.probeKey, c.probeVal})
		}
		for _, n := range body.Nodes {
			typ = typ || n.Addr == c.probeFrom && n.Type == c.probeType
		}
		if key && typ {
			s.probeAt.Store(time.Now().UnixNano())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if base != nil && base.onSync(s, &h, body) {
		return // a verification answer
	}
	if full || h.MarsInc == s.marsInc && h.From <= s.ver && s.ver <= h.To { // as View.apply takes it
		s.marsInc, s.ver = h.MarsInc, h.To
	}
	if h.Flags&syncNeedInfo != 0 {
		s.needFull = true
		if base != nil && !s.rs.regSoon { // a real node registers within ReregisterJitter
			s.rs.regSoon = true
			time.AfterFunc(time.Duration(rand.Int64N(int64(500*time.Millisecond))), func() { c.reportLater(s) })
		}
	} else {
		s.registered = true
	}
	if h.Flags&syncWait != 0 && base != nil && !s.rs.askSoon { // ask again soon, as a real node does (one timer)
		s.rs.askSoon = true
		time.AfterFunc(500*time.Millisecond+time.Duration(rand.Int64N(int64(250*time.Millisecond))), func() {
			s.mu.Lock()
			s.rs.askSoon = false
			s.mu.Unlock()
			c.reportLater(s)
		})
	}
}

// reportLater is report from a timer: nothing once the cluster stopped.
func (c *simCluster) reportLater(s *simNode) {
	select {
	case <-c.stop:
	default:
		c.report(s, nil)
	}
}

func (c *simCluster) report(s *simNode, buf []byte) []byte {
	s.mu.Lock()
	if s.rs.dead {
		s.mu.Unlock()
		return buf
	}
	r := report{App: "scale", Addr: s.addr, Inc: s.inc, MarsInc: s.marsInc, Ver: s.ver, From: s.seq, Seq: s.seq}
	if s.needFull {
		r.From = 0
		info := s.info
		r.Info = &info
		s.needFull = false
		if len(s.rs.regOps) > 0 { // a change made while MARS was down
			s.seq++
			r.Seq, r.Ops = s.seq, s.rs.regOps
			for i := range r.Ops {
				r.Ops[i].Seq = s.seq
			}
			s.rs.regOps = nil
		}
	}
	if p := s.pending; p != nil {
		s.seq++
		r.Seq = s.seq
		r.Ops = p.Ops
		if p.Info != nil {
			r.Info = p.Info
			s.info = *p.Info
		}
		for i := range r.Ops {
			r.Ops[i].Seq = s.seq
		}
		s.pending = nil
	}
	if base := c.base.Load(); base != nil {
		base.digestFor(s, &r)
	}
	s.mu.Unlock()
	buf = r.append(buf[:0])
	c.stats.reports.Add(1)
	c.stats.reportBytes.Add(uint64(len(buf)))
	s.tr.Send(*c.mars.Load(), KindReport, buf)
	return buf
}

// reporter sends the reports of one transport's nodes, each once a second
// at its own offset, until stop.
func (c *simCluster) reporter(sims []*simNode, phase time.Duration) {
	defer c.wg.Done()
	step := time.Second / time.Duration(len(sims))
	start := time.Now().Add(phase)
	var buf []byte
	timer := time.NewTimer(0)
	defer timer.Stop()
	for round := 0; ; round++ {
		for j, s := range sims {
			at := start.Add(time.Duration(round)*time.Second + time.Duration(j)*step)
			timer.Reset(time.Until(at))
			select {
			case <-c.stop:
				return
			case <-timer.C:
			}
			if time.Now().Before(s.startAt) {
				continue
			}
			buf = c.report(s, buf)
		}
	}
}

func (c *simCluster) registered() int {
	n := 0
	for _, s := range c.sims {
		s.mu.Lock()
		if s.registered {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

func (c *simCluster) close() {
	close(c.stop)
	c.wg.Wait()
	var wg sync.WaitGroup
	for _, tr := range c.trs {
		wg.Add(1)
		go func() { defer wg.Done(); tr.Close() }()
	}
	wg.Wait()
}

// procCPU returns the CPU seconds (user+system) a process has used.
func procCPU(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	ut, _ := strconv.ParseFloat(f[11], 64)                   // field 14
	st, _ := strconv.ParseFloat(f[12], 64)                   // field 15
	return (ut + st) / 100                                   // USER_HZ
}

func procRSS(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return "?"
}

var (
	scaleDowns, simDowns atomic.Int64
	scaleDownLog         = ratelog.New(slog.Default(), 5*time.Second)
)

func runScale(t *testing.T, n int) {
	perTr := envInt("MARS_SCALE_PER_TRANSPORT", 200)
	window := envDuration("MARS_SCALE_WINDOW", 10*time.Second)
	ramp := envDuration("MARS_SCALE_RAMP", time.Duration(n)*10*time.Millisecond)
	var marsAddr string
	pid := 0
	var inproc *Server
	var proc *marsProc
	var procArgs []string
	var procPort int
	var etcd *etcdtest.Server
	var replicaB *marsProc
	if os.Getenv("MARS_SCALE_ETCD") != "" { // replicas over a real etcd; the measured restart is a replica kill
		etcd = etcdtest.Start(t)
	}
	if os.Getenv("MARS_SCALE_INPROC") != "" { // for profiling with -cpuprofile: MARS in this process
		inproc = startServer(t, "", ServerOptions{TrustReportedAddr: true, Transport: rudp.Config{OnPeerDown: func(a netip.AddrPort, err error) {
			scaleDowns.Add(1)
			scaleDownLog.Warn("MARS peer down: "+err.Error(), "peer", a)
		}}})
		marsAddr, pid = inproc.Addr().String(), os.Getpid()
	} else {
		args := []string{"-insecure-trust-reported-addr"}      // many simulated nodes share one socket
		if os.Getenv("MARS_SCALE_DATA") != "" && etcd == nil { // shared data in a data file (mars-server -data)
			args = append(args, "-data", t.TempDir())
		}
		if f := os.Getenv("MARS_SCALE_PROF"); f != "" {
			args = append(args, "-cpuprofile", f)
		}
		if etcd != nil {
			args = append(args, "-store", "etcd", "-etcd-endpoints", etcd.Endpoint)
			replicaB = startMarsProc(t, freeUDPPort(t), args...)
			defer func() { replicaB.signal(os.Interrupt) }()
		}
		procPort, procArgs = freeUDPPort(t), args
		proc = startMarsProc(t, procPort, args...)
		defer func() { proc.signal(os.Interrupt) }()
		marsAddr, pid = proc.addr, proc.cmd.Process.Pid
	}
	c := &simCluster{byTr: map[*rudp.Transport][]*simNode{}, stop: make(chan struct{})}
	first := netip.MustParseAddrPort(marsAddr)
	c.mars.Store(&first)
	startAt := time.Now()
	cpuStart := procCPU(t, pid)
	etcdStart := 0.0
	if etcd != nil {
		etcdStart = procCPU(t, etcd.Pid())
	}
	for i := 0; i < n; i += perTr {
		tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{OnMessage: c.onMessage, Logger: quietLogger(), CloseTimeout: 200 * time.Millisecond,
			OnPeerDown: func(a netip.AddrPort, err error) {
				simDowns.Add(1)
				scaleDownLog.Warn("sim peer down: "+err.Error(), "peer", a)
			}})
		if err != nil {
			t.Fatal(err)
		}
		c.trs = append(c.trs, tr)
		for j := i; j < min(i+perTr, n); j++ {
			s := &simNode{
				addr: fmt.Sprintf("10.%d.%d.%d:%d", j>>16&255, j>>8&255, j&255, 8000), inc: rand.Uint64() | 1, tr: tr,
				startAt: startAt.Add(time.Duration(float64(ramp) * math.Pow(float64(j)/float64(n), 2))), needFull: true,
				info: nodeInfo{Type: "sim", Role: "UDP", Status: StatusOnline},
			}
			c.sims = append(c.sims, s)
			c.byTr[tr] = append(c.byTr[tr], s)
			c.byKey.Store(s.addr, s)
		}
	}
	c.obs.view = newView(c.sims[0].addr, c.sims[0].inc)
	for i, tr := range c.trs {
		c.wg.Add(1)
		go c.reporter(c.byTr[tr], time.Duration(i)*time.Second/time.Duration(len(c.trs)))
	}
	defer c.close()

	deadline := time.Now().Add(ramp + 2*time.Minute)
	lastLog := time.Now()
	for c.registered() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d nodes registered", c.registered(), n)
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			msg := fmt.Sprintf("%v: %d registered, %d fulls received (%d MB), peer downs: MARS %d sims %d", time.Since(startAt).Round(time.Second),
				c.registered(), c.stats.fulls.Load(), c.stats.fullBytes.Load()>>20, scaleDowns.Load(), simDowns.Load())
			if inproc != nil {
				msg += fmt.Sprintf(", MARS %+v", inproc.Stats())
			}
			t.Log(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
	regTime := time.Since(startAt)
	regCPU := procCPU(t, pid) - cpuStart
	etcdCPU := ""
	if etcd != nil {
		etcdCPU = fmt.Sprintf(" (etcd %.2f s)", procCPU(t, etcd.Pid())-etcdStart)
	}
	fulls, fullBytes := c.stats.fulls.Load(), c.stats.fullBytes.Load()
	joinDown, joinUp := c.stats.syncBytes.Load(), c.stats.reportBytes.Load()
	lastStart := c.sims[n-1].startAt.Sub(startAt)
	time.Sleep(3 * time.Second) // settle: every node has had a steady-state sync
	f0 := c.stats.fulls.Load()
	c.sims[0].mu.Lock()
	v0 := c.sims[0].ver
	c.sims[0].mu.Unlock()

	// Steady state.
	r0, rb0, s0, sb0 := c.stats.reports.Load(), c.stats.reportBytes.Load(), c.stats.syncs.Load(), c.stats.syncBytes.Load()
	var pin0, pout0 uint64
	for _, tr := range c.trs {
		st := tr.Stats()
		pin0, pout0 = pin0+st.PacketsIn, pout0+st.PacketsOut
	}
	cpu0, self0, w0 := procCPU(t, pid), procCPU(t, os.Getpid()), time.Now()
	time.Sleep(window)
	cpu1, self1, wall := procCPU(t, pid), procCPU(t, os.Getpid()), time.Since(w0).Seconds()
	r1, rb1, s1, sb1 := c.stats.reports.Load(), c.stats.reportBytes.Load(), c.stats.syncs.Load(), c.stats.syncBytes.Load()
	var pin1, pout1 uint64
	for _, tr := range c.trs {
		st := tr.Stats()
		pin1, pout1 = pin1+st.PacketsIn, pout1+st.PacketsOut
	}
	rss := procRSS(t, pid)
	reports, syncs := r1-r0, s1-s0
	f1 := c.stats.fulls.Load()
	c.sims[0].mu.Lock()
	v1 := c.sims[0].ver
	c.sims[0].mu.Unlock()

	// Propagation: node 0 sets a shared key and changes its type.
	src := c.sims[0]
	c.probeKey, c.probeVal, c.probeType, c.probeFrom = "probe", 4242, "probed", src.addr
	src.mu.Lock()
	src.pending = &report{Info: &nodeInfo{Type: "probed", Role: "UDP", Status: StatusOnline}, Ops: []op{{Key: "probe", Val: 4242}}}
	src.mu.Unlock()
	sent := time.Now()
	c.report(src, nil)
	deadline = time.Now().Add(10 * time.Second)
	var lat []time.Duration
	for {
		lat = lat[:0]
		for _, s := range c.sims[1:] {
			if at := s.probeAt.Load(); at != 0 {
				lat = append(lat, time.Duration(at-sent.UnixNano()))
			}
		}
		if len(lat) == n-1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(lat)
	if len(lat) < n-1 {
		t.Errorf("the change reached %d of %d nodes in 10 s", len(lat), n-1)
	}
	pct := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}

	store := "memory"
	switch {
	case etcd != nil:
		store = "etcd"
	case slices.Contains(procArgs, "-data"):
		store = "-data"
	}
	t.Logf("SUMMARY join (%s): nodes=%d started over %v, all listed %v after the last start (%v in all); MARS CPU %.2f s%s, %.2f ms per join; "+
		"down %.1f MB, %.1f KB per join, of which %d full snapshots (mean %d bytes); up %.1f MB",
		store, n, lastStart.Round(time.Millisecond), (regTime - lastStart).Round(time.Millisecond), regTime.Round(time.Millisecond),
		regCPU, etcdCPU, 1000*regCPU/float64(n), float64(joinDown)/(1<<20), float64(joinDown)/1024/float64(n), fulls, fullBytes/max(fulls, 1),
		float64(joinUp)/(1<<20))
	t.Logf("SUMMARY steady (%s): nodes=%d over %.1fs: MARS CPU %.3f cores, %.1f µs per node per second, RSS %s; %.1f bytes/s per node up, %.1f down "+
		"(msgpack payloads; %.2f UDP packets per report); %d versions changed and %d full snapshots in the window (want 0 and 0); this process %.2f cores",
		store, n, wall, (cpu1-cpu0)/wall, (cpu1-cpu0)/wall/float64(n)*1e6, rss,
		float64(rb1-rb0)/wall/float64(n), float64(sb1-sb0)/wall/float64(n),
		float64((pin1-pin0)+(pout1-pout0))/float64(max(reports, 1)), v1-v0, f1-f0, (self1-self0)/wall)
	t.Logf("steady state: %.0f reports/s, report %.1f bytes, sync reply %.1f bytes (msgpack payload)",
		float64(reports)/wall, float64(rb1-rb0)/float64(max(reports, 1)), float64(sb1-sb0)/float64(max(syncs, 1)))
	t.Logf("SUMMARY change (%s): one change reached %d nodes: p50 %v, p99 %v, max %v", store,
		len(lat), pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), pct(1).Round(time.Millisecond))

	switch {
	case etcd != nil && replicaB != nil:
		scaleReplicaKill(t, c, n, proc, replicaB, etcd)
	case os.Getenv("MARS_SCALE_RESTART") != "" && proc != nil:
		scaleRestart(t, c, n, &proc, procPort, procArgs)
	}
}

// scaleReplicaKill measures a replica kill (MARS_SCALE_ETCD set): the
// simulated nodes are served by replica A of two mars-server -store etcd
// over one etcd; A is SIGKILLed and every node's reports go to replica B at
// once (a real node moves after retryTimeout plus jitter). Reported: the
// time until B has answered every node, B's and etcd's CPU, the bytes each
// way, and how many full snapshots and re-registrations it took (a node
// continues from its version: both should be 0).
func scaleReplicaKill(t *testing.T, c *simCluster, n int, a, b *marsProc, etcd *etcdtest.Server) {
	for _, s := range c.sims {
		s.mu.Lock()
		s.registered = false
		s.mu.Unlock()
	}
	rb0, sb0, f0, fb0 := c.stats.reportBytes.Load(), c.stats.syncBytes.Load(), c.stats.fulls.Load(), c.stats.fullBytes.Load()
	pidB, pidE := b.cmd.Process.Pid, etcd.Pid()
	cpuB0, cpuE0 := procCPU(t, pidB), procCPU(t, pidE)
	a.signal(syscall.SIGKILL)
	killed := time.Now()
	to := netip.MustParseAddrPort(b.addr)
	c.mars.Store(&to)
	deadline := killed.Add(3 * time.Minute)
	var half time.Duration
	lastLog := time.Now()
	for c.registered() < n {
		if time.Now().After(deadline) {
			t.Errorf("replica kill: only %d of %d nodes served by the other replica in 3 minutes", c.registered(), n)
			break
		}
		if half == 0 && c.registered() >= n/2 {
			half = time.Since(killed)
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			t.Logf("replica kill: %v: %d served by B", time.Since(killed).Round(time.Second), c.registered())
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(killed)
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	t.Logf("SUMMARY replica kill (etcd): nodes=%d: half served by the other replica after %v, %d after %v; its CPU %.2f s, RSS %s; etcd CPU %.2f s",
		n, half.Round(time.Millisecond), c.registered(), took.Round(time.Millisecond), procCPU(t, pidB)-cpuB0, procRSS(t, pidB), procCPU(t, pidE)-cpuE0)
	t.Logf("replica kill traffic until all served (msgpack payloads): reports %.1f MB up, syncs %.1f MB down, of which %d full snapshots, %.1f MB",
		mb(c.stats.reportBytes.Load()-rb0), mb(c.stats.syncBytes.Load()-sb0), c.stats.fulls.Load()-f0, mb(c.stats.fullBytes.Load()-fb0))
}
