package mesh

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestE2EMarsOutage (issue 13 item 1), with separate processes: MARS is
// SIGKILLed while two node processes exchange RPCs, one every 10 ms each
// way (about 80/s each way here); it stays down until both nodes have logged "lost MARS", then
// restarts on the same port (MESH_E2E_OUTAGE=30s holds it down that long).
// No RPC fails, each node logs one "lost MARS"
// and one "MARS back", and the restarted MARS lists both nodes again.
func TestE2EMarsOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with processes; skipped with -short")
	}
	bin := buildMarsServer(t)
	mp := startMarsServer(t, bin)
	cfgPath := e2eConfig(t)
	var a, b *procNode
	for i, p := range []**procNode{&a, &b} {
		n, err := startProcNode(t, fmt.Sprintf("node%d", i), mp.port, cfgPath, "game")
		if err != nil {
			t.Fatal(err)
		}
		*p = n
		t.Cleanup(n.stop)
	}
	eventually(t, 10*time.Second, func() bool {
		return strings.Contains(a.do("nodes"), b.addr) && strings.Contains(b.do("nodes"), a.addr)
	}, "the nodes see each other")
	if r := a.do("shared-set base 5"); r != "true" {
		t.Fatalf("shared-set: %s", r)
	}
	eventually(t, 10*time.Second, func() bool { return b.do("shared-get base") == "5 true" }, "b sees base=5")

	// RPCs both ways, every 10 ms, for the whole test.
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var stopOnce sync.Once
	var wg sync.WaitGroup
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	for _, pair := range [][2]*procNode{{a, b}, {b, a}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				sent.Add(1)
				if r := pair[0].do("rpc %s %d 16 3000", pair[1].addr, e2eEcho); r != "ok 16" {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, pair[0].name+": "+r)
				}
			}
		}()
	}
	defer halt()
	eventually(t, 10*time.Second, func() bool { return sent.Load() >= 20 }, "some RPCs with MARS up")

	// A write just before the kill: MARS has it (b's view too), a's view
	// may not have it yet.
	if r := b.do("shared-set late 9"); r != "true" {
		t.Fatalf("shared-set: %s", r)
	}
	eventually(t, 10*time.Second, func() bool { return b.do("shared-get late") == "9 true" }, "MARS has the write")
	mp.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	eventually(t, 20*time.Second, func() bool {
		return strings.Contains(a.stderr.String(), "lost MARS") && strings.Contains(b.stderr.String(), "lost MARS")
	}, "both nodes log that they lost MARS")
	t.Logf("both nodes logged the loss %v after the kill", time.Since(killed).Round(time.Millisecond))
	if d, err := time.ParseDuration(os.Getenv("MESH_E2E_OUTAGE")); err == nil { // e.g. 30s, the check
		time.Sleep(time.Until(killed.Add(d)))
	}

	startMarsOnPort(t, bin, mp.port)
	back := time.Now()
	cfg := testConfig(mp.port)
	cfg.RetryTimeout = e2eRetryTimeout
	obs, err := New(cfg, WithType("observer"), WithLogger(quiet), WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Shutdown()
	eventually(t, 20*time.Second, func() bool {
		return obs.GetNode(a.addr) != nil && obs.GetNode(b.addr) != nil && !obs.IsNodeOffline(a.addr) && !obs.IsNodeOffline(b.addr)
	}, "the restarted MARS lists both nodes")
	relisted := time.Since(back)
	eventually(t, 10*time.Second, func() bool {
		return strings.Contains(a.stderr.String(), "MARS back") && strings.Contains(b.stderr.String(), "MARS back")
	}, "both nodes log that MARS is back")
	// Shared data unchanged, also past the re-registration grace period
	// (3 intervals + 500 ms), when views drop what MARS did not confirm.
	shared := func() bool {
		v1, _ := obs.GetSharedData("base")
		v2, _ := obs.GetSharedData("late")
		return v1 == 5 && v2 == 9 && a.do("shared-get base") == "5 true" && a.do("shared-get late") == "9 true" &&
			b.do("shared-get late") == "9 true"
	}
	eventually(t, 10*time.Second, shared, "shared data back after the restart")
	time.Sleep(4 * time.Second)
	if !shared() {
		t.Error("shared data changed after the grace period")
	}
	halt()
	t.Logf("outage %v; both nodes listed again %v after the restart; %d RPCs, %d failed",
		back.Sub(killed).Round(time.Millisecond), relisted.Round(time.Millisecond), sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d RPCs failed; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	if relisted > 3*time.Second+e2eSlack {
		t.Logf("note: relisting took %v (over 3 s; this machine is loaded)", relisted)
	}
	for _, p := range []*procNode{a, b} {
		log := p.stderr.String()
		if l, k := strings.Count(log, "lost MARS"), strings.Count(log, "MARS back"); l != 1 || k != 1 {
			t.Errorf("%s logged %d \"lost MARS\" and %d \"MARS back\" lines, want 1 each:\n%s", p.name, l, k, log)
		}
	}
}

// startMarsOnPort starts bin on a given loopback port (a restart) and
// waits until it listens.
func startMarsOnPort(t *testing.T, bin string, port uint16, args ...string) {
	t.Helper()
	p, exited := spawnMars(t, bin, port, args)
	eventually(t, 10*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("mars-server exited:\n%s", p.log)
		default:
		}
		return strings.Contains(p.log.String(), "mars-server listening")
	}, "mars-server listens on port %d", port)
}
