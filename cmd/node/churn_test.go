package main

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

// The churn check of issue 21, across processes: a keyed cluster of
// churnNodes `node run -events` processes, each restarted in turn with
// SIGTERM (its successor is a new process on the same port), while a
// driver node in the test process calls SendRPC to nodes picked from
// GetNodeAddressesByType and SendMany to the whole list. No call may fail
// with a timeout or a send error; calls that race a drain get ErrDraining
// (how fast is logged); every node's membership events show each restarted
// node draining then gone, and its successor joining then online, in order.

const churnNodes = 10

// churnProc is one `node run` process of the test.
type churnProc struct {
	*proc
	addr   string
	inc    uint64    // its incarnation, as the driver's view lists it
	joined time.Time // when the driver listed it online
	exited time.Time // when it exited (zero while it runs)
}

// churnRestart is one restart: the node at addr went from incarnation
// old to new between from and to.
type churnRestart struct {
	addr     string
	old, new uint64
	from, to time.Time
	drained  time.Duration // SIGTERM to exit
}

func TestChurnRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("10 node processes restarted in turn: about a minute")
	}
	key := newKey(t)
	marsPort := strconv.Itoa(freePort(t))
	env := []string{"DIARKIS_MARS_PORT=" + marsPort, "DIARKIS_MESH_KEY=" + key}
	startMarsProc(t, freeAdmin(t), env...)

	cfg := config.Default()
	cfg.Port, cfg.MarsPort, cfg.MeshKey = "0", marsPort, key
	d, err := mesh.New(cfg, mesh.WithType("driver"), mesh.WithLogger(quiet), mesh.WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown() })
	view := d.Mars().View()
	var driverLog eventLog
	defer d.OnNodeEvent(driverLog.add)()

	// The nodes, started together.
	// GORACE: a binary built with -race sleeps a second before it exits.
	runNode := func(port string) *proc {
		return start(t, append(env, "DIARKIS_PORT="+port, "GORACE=atexit_sleep_ms=0"), "run", "-type", "game", "-events")
	}
	var procs []*churnProc // every process, successors appended
	live := make([]*churnProc, churnNodes)
	for i := range live {
		live[i] = &churnProc{proc: runNode("0")}
		procs = append(procs, live[i])
	}
	for _, p := range live {
		p.addr = p.proc.joined(t)
	}
	eventually(t, 30*time.Second, "the driver lists every node online", func() bool {
		return len(d.GetNodeAddressesByType("game")) == churnNodes
	})
	for _, p := range live {
		n, _ := view.Node(p.addr)
		p.inc, p.joined = n.Incarnation, time.Now()
	}

	drv := &churnDriver{n: d, typ: "game"}
	drv.start(4)
	defer func() {
		select {
		case <-drv.stop:
		default:
			drv.halt()
		}
	}()
	eventually(t, 30*time.Second, "the driver's first 100 answers", func() bool { return drv.answered() >= 100 })

	var restarts []churnRestart
	for i, p := range live {
		// Every other node knows the node before it restarts (a node syncs
		// once a second: one that never listed it sees nothing of it).
		waitLoggedOnline(t, live, p, p.inc)
		r := churnRestart{addr: p.addr, old: p.inc, from: time.Now()}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("%s: exit %d after SIGTERM\n%s", p.addr, code, p.stderr.String())
		}
		p.exited = time.Now()
		r.drained = p.exited.Sub(r.from)
		_, port, _ := strings.Cut(p.addr, ":")
		next := &churnProc{proc: runNode(port)}
		if next.addr = next.proc.joined(t); next.addr != p.addr {
			t.Fatalf("the successor of %s started on %s", p.addr, next.addr)
		}
		eventually(t, 30*time.Second, "the driver lists the successor of "+p.addr+" online", func() bool {
			n, ok := view.Node(p.addr)
			return ok && n.Incarnation != p.inc && n.State == mesh.StateOnline
		})
		n, _ := view.Node(p.addr)
		next.inc, next.joined = n.Incarnation, time.Now()
		r.new, r.to = next.inc, next.joined
		// One at a time: every node lists the successor online before the
		// next restart.
		waitLoggedOnline(t, live, p, next.inc)
		live[i] = next
		procs = append(procs, next)
		restarts = append(restarts, r)
		t.Logf("restart %d at %s: %s drained and exited in %v; successor online %v after SIGTERM",
			i+1, r.from.Format("15:04:05.000"), p.addr, r.drained.Round(time.Millisecond), r.to.Sub(r.from).Round(time.Millisecond))
	}
	at := drv.answered()
	eventually(t, 30*time.Second, "100 more answers after the last restart", func() bool { return drv.answered() >= at+100 })
	drv.halt()

	// Calls.
	t.Logf("driver: %d RPCs answered, %d refused with ErrDraining, %d fan-outs complete, %d failed; %d calls took over %v",
		drv.ok, len(drv.draining), drv.fanouts, len(drv.failed), drv.over, stallLimit)
	for _, f := range drv.failed {
		t.Errorf("failed: %s", f)
	}
	slices.Sort(drv.okTook)
	if n := len(drv.okTook); n > 0 {
		t.Logf("answered RPCs took: median %v, p99 %v, max %v", drv.okTook[n/2], drv.okTook[n*99/100], drv.okTook[n-1])
	}
	for _, c := range drv.draining {
		t.Logf("ErrDraining: %s at %s took %v", c.what, c.at.Format("15:04:05.000"), c.took.Round(time.Microsecond))
	}
	for _, c := range drv.slowest {
		t.Logf("slow call: %s at %s took %v", c.what, c.at.Format("15:04:05.000"), c.took.Round(time.Microsecond))
	}
	for _, c := range drv.late {
		t.Logf("driver stall: a 1 ms timer at %s woke %v late", c.at.Format("15:04:05.000"), c.took.Round(time.Microsecond))
	}

	// Events: every process that ran through a whole restart of another
	// node saw it in order; so did the driver.
	streams := map[string]string{"driver": driverLog.String()}
	for _, p := range procs {
		streams[p.addr+" (inc "+strconv.FormatUint(p.inc, 10)+")"] = p.stderr.String()
	}
	for _, r := range restarts {
		for name, log := range streams {
			if name != "driver" && !ranThrough(procs, name, r) {
				continue
			}
			if got := eventsOf(log, r.addr, r.old); !inOrder(got, "draining", "gone") || got[len(got)-1] != "gone" {
				t.Errorf("%s saw %s (inc %d) go %v, want draining then gone; its events of %[2]s:\n%[5]s", name, r.addr, r.old, got, eventLines(log, r.addr))
			}
			if got := eventsOf(log, r.addr, r.new); !inOrder(got, "joining", "online") {
				t.Errorf("%s saw %s (inc %d) come %v, want joining then online; its events of %[2]s:\n%[5]s", name, r.addr, r.new, got, eventLines(log, r.addr))
			}
		}
	}
	for _, p := range live {
		stopProc(t, p.proc)
	}
}

// waitLoggedOnline waits until every process of live but p has logged
// the incarnation inc of p's address online.
func waitLoggedOnline(t *testing.T, live []*churnProc, p *churnProc, inc uint64) {
	t.Helper()
	for _, q := range live {
		if q != p {
			eventually(t, 30*time.Second, fmt.Sprintf("%s logs %s (inc %d) online", q.addr, p.addr, inc), func() bool {
				return slices.Contains(eventsOf(q.stderr.String(), p.addr, inc), "online")
			})
		}
	}
}

// ranThrough reports whether the process named name (address and
// incarnation) ran from before r began until after it ended, and is not
// the restarted node itself.
func ranThrough(procs []*churnProc, name string, r churnRestart) bool {
	for _, p := range procs {
		if p.addr+" (inc "+strconv.FormatUint(p.inc, 10)+")" == name {
			return p.addr != r.addr && p.joined.Before(r.from) && (p.exited.IsZero() || p.exited.After(r.to))
		}
	}
	return false
}

// eventRE matches the membership event lines of `node run -events`.
var eventRE = regexp.MustCompile(`msg="node event" node=(\S+) inc=(\d+) type=\S* old=(\S+) new=(\S+) reason=(\S+)`)

// eventsOf lists the new states of the events a node log shows for the
// node at addr, incarnation inc, in order.
func eventsOf(log, addr string, inc uint64) []string {
	var out []string
	want := strconv.FormatUint(inc, 10)
	for _, m := range eventRE.FindAllStringSubmatch(log, -1) {
		if m[1] == addr && m[2] == want {
			out = append(out, m[4])
		}
	}
	return out
}

// eventLines returns the lines of a node log with the events of addr.
func eventLines(log, addr string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="node event" node=`+addr+" ") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// inOrder reports whether states holds a, then later b.
func inOrder(states []string, a, b string) bool {
	i := slices.Index(states, a)
	return i >= 0 && slices.Contains(states[i+1:], b)
}

// eventLog renders a node's membership events as `node run -events`
// logs them.
type eventLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *eventLog) add(ev mars.NodeEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, "msg=\"node event\" node=%s inc=%d type=%s old=%s new=%s reason=%s\n", ev.Addr, ev.Incarnation, ev.Type, ev.Old, ev.New, ev.Reason)
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
