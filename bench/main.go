// Command bench measures marsmesh beside gRPC, NATS, raw kcp-go and raw
// UDP on the same work and writes the comparison as markdown tables and an
// SVG chart. By default every system's server end runs in child processes
// (this binary re-executed with -serve KIND) and its client end in this
// process, over 127.0.0.1; -inproc adds the one-process view, -suite lossy
// a link with delay and loss between two network namespaces.
//
//	cd bench && go run . -duration 5s
//
// Every case stops at a message count and at a time limit, and stops every
// server, node, goroutine and child process it started before the next
// begins.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// plan is the cases and their bounds.
type plan struct {
	duration   time.Duration // time limit of one measured run
	payloads   []int         // request/response payloads
	concs      []int         // request/response concurrencies
	latCount   int64         // requests at concurrency 1 (latency)
	tputCount  int64         // requests at higher concurrency (1 KiB or less)
	owPayloads []int
	owCount    int64
	fanNodes   []int
	psNodes    []int // subscribers of the pub-sub suite (xpubsub.go)
	fanLimits  []int
	fanPayload int
	fanRounds  int
	costRPC    int64
	costOW     int64
	sessions   int
	rounds     int // slices each one-process case is cut into, the systems taking turns
	xrounds    int // rounds of each cross-process case (figures are medians of rounds)
	lossRates  []float64
	lossCount  int64 // requests per round and system in the lossy suite
	fanProcs   int   // receiver processes of the cross-process fan-out (0: one per receiver)

	streamCount int64 // messages of a stream case (countFor scales 64 KiB down)
}

func fullPlan(d time.Duration) plan {
	return plan{
		duration: d, payloads: []int{64, 1024, 64 << 10}, concs: []int{1, 16, 64, 256},
		latCount: 20000, tputCount: 120000,
		owPayloads: []int{64, 1024}, owCount: 300000, streamCount: 300000,
		fanNodes: []int{8, 32, 64}, fanLimits: []int{2, 4, 8}, fanPayload: 64, fanRounds: 300, psNodes: []int{1, 8, 64},
		costRPC: 30000, costOW: 200000, sessions: 1000, rounds: 5,
		xrounds: 5, lossRates: []float64{0, 1, 5}, lossCount: 2000,
	}
}

func quickPlan(d time.Duration) plan {
	return plan{
		duration: d, payloads: []int{64, 1024, 64 << 10}, concs: []int{1, 64},
		latCount: 3000, tputCount: 10000,
		owPayloads: []int{64}, owCount: 50000, streamCount: 50000,
		fanNodes: []int{8, 64}, fanLimits: []int{8}, fanPayload: 64, fanRounds: 50, psNodes: []int{1, 8},
		costRPC: 5000, costOW: 50000, sessions: 200, rounds: 2,
		xrounds: 3, lossRates: []float64{0, 5}, lossCount: 200, fanProcs: 8,
	}
}

func (p *plan) scale(f float64) {
	for _, c := range []*int64{&p.latCount, &p.tputCount, &p.owCount, &p.streamCount, &p.costRPC, &p.costOW, &p.lossCount} {
		*c = max(int64(float64(*c)*f), 1)
	}
	p.fanRounds = max(int(float64(p.fanRounds)*f), 1)
}

// countFor scales a request count down for large payloads, so a 64 KiB case
// moves about as many bytes as a 4 KiB one would.
func countFor(base int64, payload int) int64 {
	if payload <= 4096 {
		return base
	}
	return max(base*4096/int64(payload), 200)
}

type bench struct {
	plan
	run        Run
	profileDir string
	profileSys string
	budgetEnd  time.Time
	only       map[string]bool // systems to run (empty: all)
	fleets     map[string]*fleet
	fleetErr   map[string]error
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveFlag {
		os.Exit(serveMain(os.Args[2:])) // a child: the server end of a system
	}
	defer func() {
		if p := recover(); p != nil {
			stopEverything()
			panic(p)
		}
	}()
	defer stopEverything() // normally a no-op: every suite stops what it started
	defer guardChildren(runCleanups)()
	suite := flag.String("suite", "all", "suites to run: all (xrpc, xoneway, xstream, xfanout; with -inproc also rpc, oneway, stream, fanout, cost), or a comma list of xrpc, xoneway, xstream, xfanout, xpubsub, xpubsub-lossy, lossy, xkv, rpc, oneway, stream, fanout, cost")
	inproc := flag.Bool("inproc", false, "with -suite all, also run the one-process suites rpc, oneway, stream, fanout and cost (the secondary view)")
	psNodes := flag.String("psnodes", "", "comma list of subscriber counts of the pub-sub suite (default 1,8,64; 1,8 with -quick)")
	fanProcs := flag.Int("fanprocs", -1, "receiver processes of the cross-process fan-out, receivers spread evenly (default: one per receiver; 8 with -quick)")
	rounds := flag.Int("rounds", 0, "rounds of each cross-process case (default 5, or 3 with -quick; at least 3 for medians)")
	loss := flag.String("loss", "", "comma list of netem loss percentages of the lossy suite (default 0,1,5; 0,5 with -quick)")
	duration := flag.Duration("duration", 5*time.Second, "time limit of each measured case (each also stops at its count)")
	quick := flag.Bool("quick", false, "fewer, shorter cases (for CI; well under a minute)")
	out := flag.String("out", "", "markdown report `file` to write (default: stdout; the committed report is ../BENCHMARKS.md)")
	svgPath := flag.String("svg", "", "SVG chart `file` to write, linked from the report (default: none; the committed chart is results/charts.svg)")
	jsonPath := flag.String("json", "", "also write the raw results as JSON here")
	merge := flag.String("merge", "", "comma list of JSON results to merge (medians) instead of running")
	budget := flag.Duration("budget", 0, "skip cases that would start after this much time (default 10m, or 55s with -quick)")
	profDir := flag.String("cpuprofile", "", "write a CPU profile of each measured case of -profile-system into this directory")
	profSys := flag.String("profile-system", sysMarsmesh, "system key the CPU profiles are taken of")
	payloads := flag.String("payloads", "", "comma list of request/response and one-way payload sizes in bytes (default: the plan's)")
	concs := flag.String("concs", "", "comma list of request/response concurrencies (default: the plan's)")
	scale := flag.Float64("scale", 1, "multiply every case's count by this (longer, steadier runs, e.g. for profiles)")
	inline := flag.Bool("inline", false, "marsmesh nodes run RPC handlers inline (mesh.WithInlineHandlers); children inherit it")
	traced := flag.Bool("trace", false, "marsmesh nodes trace every request (OpenTelemetry: every span sampled, a batch span processor, an exporter that drops the spans); children inherit it")
	systems := flag.String("systems", "", "comma list of system keys to run (default all): marsmesh, marsmesh-usend, grpc, nats, kcp, udp")
	flag.Parse()
	if *inline {
		os.Setenv("MMBENCH_INLINE", "1")
	}
	if *traced {
		os.Setenv("MMBENCH_TRACE", "1")
	}

	var run Run
	var sources []Run
	if *merge != "" {
		for _, p := range strings.Split(*merge, ",") {
			r, err := loadRun(p)
			if err != nil {
				fatalf("merge: %v", err)
			}
			sources = append(sources, r)
		}
		run = MergeRuns(sources)
		run.Command = commandLine()
		for _, s := range sources {
			run.Sources = append(run.Sources, s.Command)
		}
	} else {
		p := fullPlan(*duration)
		if *quick {
			d := *duration
			if !flagSet("duration") {
				d = 400 * time.Millisecond
			}
			p = quickPlan(d)
		}
		if *payloads != "" {
			p.payloads = intList(*payloads)
			p.owPayloads = p.payloads
		}
		if *scale != 1 {
			p.scale(*scale)
		}
		if *concs != "" {
			p.concs = intList(*concs)
		}
		if *psNodes != "" {
			p.psNodes = intList(*psNodes)
		}
		if *rounds > 0 {
			p.xrounds = *rounds
		}
		if *fanProcs >= 0 {
			p.fanProcs = *fanProcs
		}
		if *loss != "" {
			p.lossRates = floatList(*loss)
		}
		if *budget == 0 {
			*budget = 10 * time.Minute
			if *quick {
				*budget = 55 * time.Second
			}
		}
		b := &bench{plan: p, profileDir: *profDir, profileSys: *profSys, budgetEnd: time.Now().Add(*budget), only: map[string]bool{},
			fleets: map[string]*fleet{}, fleetErr: map[string]error{}}
		for _, s := range strings.Split(*systems, ",") {
			if s != "" {
				b.only[s] = true
			}
		}
		if b.profileDir != "" {
			if err := os.MkdirAll(b.profileDir, 0o755); err != nil {
				fatalf("%v", err)
			}
		}
		b.run = Run{Env: currentEnv(), Command: commandLine(),
			Quick: *quick, Duration: p.duration.String()}
		start := time.Now()
		want := map[string]bool{}
		for _, s := range strings.Split(*suite, ",") {
			want[strings.TrimSpace(s)] = true
		}
		all := want["all"]
		if all || want["xrpc"] {
			b.suiteXRPC()
		}
		if all || want["xoneway"] {
			b.suiteXOneWay()
		}
		if all || want["xstream"] {
			b.suiteXStream()
		}
		if all || want["xfanout"] {
			b.suiteXFanout()
		}
		if want["xpubsub"] {
			b.suiteXPubsub()
		}
		b.closeFleets()
		if want["lossy"] {
			b.suiteLossy()
		}
		if want["xpubsub-lossy"] {
			b.suiteLossyPubsub()
		}
		if want["xkv"] {
			b.suiteXKV()
		}
		if all && *inproc || want["rpc"] {
			b.suiteRPC()
		}
		if all && *inproc || want["oneway"] {
			b.suiteOneWay()
		}
		if all && *inproc || want["stream"] {
			b.suiteStream()
		}
		if all && *inproc || want["fanout"] {
			b.suiteFanout()
		}
		if all && *inproc || want["cost"] {
			b.suiteCost()
		}
		b.run.Elapsed = time.Since(start).Seconds()
		run = b.run
		logf("all cases done in %.1f s", run.Elapsed)
	}

	if *jsonPath != "" {
		if err := saveRun(*jsonPath, run); err != nil {
			fatalf("json: %v", err)
		}
	}
	svgLink := ""
	if *svgPath != "" {
		if err := os.MkdirAll(filepath.Dir(*svgPath), 0o755); err != nil {
			fatalf("%v", err)
		}
		if err := os.WriteFile(*svgPath, []byte(Charts(run)), 0o644); err != nil {
			fatalf("svg: %v", err)
		}
		svgLink = *svgPath
		if *out != "" && *out != "-" {
			if rel, err := relPath(filepath.Dir(*out), *svgPath); err == nil {
				svgLink = rel
			}
		}
	}
	md := Markdown(run, svgLink)
	if *out != "" && *out != "-" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fatalf("%v", err)
		}
		logf("wrote %s", *out)
	} else {
		fmt.Print(md)
	}
	if *merge == "" {
		// A case that could not run at all means the benchmark (or the
		// library) is broken: say so in the exit status, for CI. Missed
		// goals and requests that failed under load are figures, not this.
		broken := 0
		for _, r := range run.Records {
			if r.Err != "" && !strings.HasPrefix(r.Err, "n/a") && !strings.HasPrefix(r.Err, "skipped") {
				logf("case failed: %s %s %s c=%d n=%d l=%d: %s", r.Suite, r.Name, sizeName(r.Payload), r.Conc, r.Nodes, r.Limit, r.Err)
				broken++
			}
		}
		if broken > 0 {
			fatalf("%d cases failed", broken)
		}
	}
}

// commandLine is how to repeat this invocation from a shell.
func commandLine() string {
	args := []string{"cd bench && go run ."}
	for _, a := range os.Args[1:] {
		args = append(args, shellQuote(a))
	}
	return strings.Join(args, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./,=:+-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func intList(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fatalf("bad number %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out
}

func floatList(s string) []float64 {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 100 {
			fatalf("bad percentage %q in %q (want 0..100)", f, s)
		}
		out = append(out, v)
	}
	return out
}

func relPath(base, target string) (string, error) {
	ab, err := filepath.Abs(base)
	if err != nil {
		return "", err
	}
	at, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	return filepath.Rel(ab, at)
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	logf(format, args...)
	stopEverything()
	os.Exit(1)
}

// cleanups run on exit, also on failure and on signals (e.g. removing the
// network namespaces of the lossy suite).
var cleanups struct {
	sync.Mutex
	fs []func()
}

func addCleanup(f func()) {
	cleanups.Lock()
	cleanups.fs = append(cleanups.fs, f)
	cleanups.Unlock()
}

// runCleanups runs and forgets every registered cleanup, latest first.
func runCleanups() {
	cleanups.Lock()
	fs := cleanups.fs
	cleanups.fs = nil
	cleanups.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// stopEverything kills every child process and runs the cleanups.
func stopEverything() {
	killAll()
	runCleanups()
}

// overBudget reports (and logs, once per case) that the time budget is spent.
func (b *bench) overBudget(what string) bool {
	if time.Now().After(b.budgetEnd) {
		logf("skipped %s: time budget spent", what)
		return true
	}
	return false
}

func (b *bench) skipSystem(key string) bool { return len(b.only) > 0 && !b.only[key] }

// profile starts a CPU profile for a case of the profiled system; the
// returned func stops it.
func (b *bench) profile(system, name string) func() {
	if b.profileDir == "" || system != b.profileSys {
		return func() {}
	}
	f, err := os.Create(filepath.Join(b.profileDir, name+".pprof"))
	if err != nil {
		logf("profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		logf("profile: %v", err)
		f.Close()
		return func() {}
	}
	// Allocation profiles before and after: compare them with
	// go tool pprof -sample_index=alloc_objects -diff_base NAME.allocs0.pprof NAME.allocs.pprof
	writeAllocs := func(suffix string) {
		if af, err := os.Create(filepath.Join(b.profileDir, name+suffix)); err == nil {
			pprof.Lookup("allocs").WriteTo(af, 0)
			af.Close()
		}
	}
	writeAllocs(".allocs0.pprof")
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		writeAllocs(".allocs.pprof")
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func fileSize(n int) string { return strings.ReplaceAll(sizeName(n), " ", "") }
