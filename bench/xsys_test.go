package main

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a child process, as the bench
// binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == serveFlag {
		os.Exit(serveMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// gone reports that no process has the pid any more (waited for, so not
// even a zombie).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestCrossProcessEverySystemStartsAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	start := takeSnap([]int{os.Getpid()})
	base := runtime.NumGoroutine()
	var pids []int
	fleets := map[string]*fleet{}
	defer killAll()
	for _, sys := range rpcSystems() {
		f, err := spawnFleet(sys.key, "", "127.0.0.1")
		if err != nil {
			t.Fatalf("%s: %v", sys.name, err)
		}
		fleets[sys.key] = f
		pids = append(pids, f.pids()...)
		for _, payload := range []int{64, 64 << 10} {
			tg, err := dialRPC(sys.key, "127.0.0.1", f.eps, payload)
			if sys.maxSize > 0 && payload > sys.maxSize {
				if err == nil {
					t.Errorf("%s accepted %d bytes", sys.name, payload)
					tg.Close()
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s %d B: %v", sys.name, payload, err)
			}
			if m, ok := tg.(*meshRPC); ok {
				m.server = f.procs[len(f.procs)-1]
			}
			for _, conc := range []int{1, 8} {
				if err := tg.Prepare(conc); err != nil {
					t.Fatal(err)
				}
				r := runClosedLoop(tg, payload, conc, 50, 20*time.Second, false)
				if r.Done != 50 || r.Errors != 0 {
					t.Errorf("%s %d B c=%d: done %d errors %d %v", sys.name, payload, conc, r.Done, r.Errors, r.ErrKinds)
				}
			}
			if x := retransmits(tg); (sys.key == sysMarsmesh) != (x >= 0) {
				t.Errorf("%s: retransmissions %v (known for marsmesh only)", sys.name, x)
			}
			if err := tg.Close(); err != nil {
				t.Errorf("%s close: %v", sys.name, err)
			}
		}
	}
	// Every process of a system is counted.
	s0 := takeSnap(append([]int{os.Getpid()}, fleets[sysMarsmesh].pids()...))
	for _, sys := range onewaySystems() {
		f := fleets[sys.key]
		if sys.key == sysMarsmeshUSend {
			f = fleets[sysMarsmesh]
		}
		tg, err := dialOneWay(sys.key, "127.0.0.1", f)
		if err != nil {
			t.Fatalf("%s: %v", sys.name, err)
		}
		r := runOneWay(tg, 64, 300, 20*time.Second, false)
		if r.Sent != 300 || (!sys.lossy && r.Delivered != 300) || r.Delivered <= 0 || r.Elapsed <= 0 {
			t.Errorf("%s: %+v", sys.name, r)
		}
		if err := tg.Close(); err != nil {
			t.Errorf("%s close: %v", sys.name, err)
		}
	}
	c := takeSnap(append([]int{os.Getpid()}, fleets[sysMarsmesh].pids()...)).since(s0)
	// Streams, counted in the children.
	for _, sys := range streamSystems() {
		f := fleets[sys.key]
		for _, payload := range []int{64, 64 << 10} {
			tg, err := dialStream(sys.key, "127.0.0.1", f.eps)
			if err != nil {
				t.Fatalf("%s: %v", sys.name, err)
			}
			tg = remoteOneWay{onewayTarget: tg, count: remoteSink(f.sink())}
			if r := runOneWay(tg, payload, 300, 20*time.Second, false); r.Sent != 300 || r.Delivered != 300 {
				t.Errorf("%s %d B: %+v", sys.name, payload, r)
			}
			if err := tg.Close(); err != nil {
				t.Errorf("%s close: %v", sys.name, err)
			}
		}
	}
	// Fan-out: 5 receivers over 2 processes each.
	b := &bench{plan: quickPlan(time.Second), fleets: fleets, fleetErr: map[string]error{}}
	b.fanProcs = 2
	for _, key := range []string{sysMarsmesh, sysNATS} {
		x, err := b.spawnXFan(key, 5)
		if err != nil {
			t.Fatalf("%s fan-out: %v", key, err)
		}
		pids = append(pids, x.pids[2:]...)
		var send func([]byte) error
		if key == sysMarsmesh {
			n, err := newMeshNode("127.0.0.1", fleets[key].eps[0])
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown()
			send = func(m []byte) error { return n.SendMany(cmdSink, x.addrs, m, 2) }
		} else {
			nc, err := natsConnect(fleets[key].eps[0])
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			send = func(m []byte) error { return nc.Publish(natsFanSubject, m) }
		}
		if lat, err := x.run(64, 2, 5, 20*time.Second, send); err != nil || len(lat) != 5 {
			t.Errorf("%s fan-out rounds: %v %v", key, lat, err)
		}
		if len(x.sinks) != 2 {
			t.Errorf("%s: %d receiver processes, want 2", key, len(x.sinks))
		}
		x.Close()
	}
	// CPU time is counted in clock ticks (10 ms), each given to whichever
	// process runs then: on a busy machine the few ms of the one-way
	// rounds can get none, so CPU is checked over the whole test.
	if !c.Valid || c.Ctx <= 0 || c.UDPOut <= 0 || c.CPU < 0 {
		t.Errorf("counters: %+v", c)
	}
	if all := takeSnap([]int{os.Getpid()}).since(start); !all.Valid || all.CPU <= 0 {
		t.Errorf("CPU of the test process over the whole test: %+v", all)
	}
	for k, f := range fleets {
		if err := f.Close(); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if n := liveChildren(); n != 0 {
		t.Errorf("%d children left", n)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("child %d still exists", pid)
		}
	}
	settleGoroutines(t, base+leakSlack)
}

func TestKillAllEndsChildren(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	c, err := startChild("", "udp", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pid := c.pid()
	killAll()
	if n := liveChildren(); n != 0 || !gone(pid) {
		t.Fatalf("after killAll: %d children, pid %d gone %v", n, pid, gone(pid))
	}
	if _, err := startChild("", "no-such-kind"); err == nil || liveChildren() != 0 {
		t.Fatalf("a failing child: %v, %d children", err, liveChildren())
	}
}

func TestLossyLinkIsCreatedAndDeleted(t *testing.T) {
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
	if why := lossyUnavailable(); why != "" {
		t.Skip(why)
	}
	l, err := newLossLink()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.setLoss(5); err != nil {
		t.Error(err)
	}
	c, err := startChild(l.nsB, "udp", lossIPB)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	d, err := startChild(l.nsA, "driver", sysUDP, lossIPA, "64", c.ready)
	if err == nil {
		line, err := d.ask("run 1 20 5000", 30*time.Second)
		if err != nil || !strings.HasPrefix(line, "RESULT ") {
			t.Errorf("driver: %q %v", line, err)
		}
		d.Close()
	} else {
		t.Error(err)
	}
	c.Close()
	l.Close()
	runCleanups()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), l.nsA) || strings.Contains(string(out), l.nsB) {
		t.Errorf("namespaces left: %s", out)
	}
	if n := liveChildren(); n != 0 {
		t.Errorf("%d children left", n)
	}
}
