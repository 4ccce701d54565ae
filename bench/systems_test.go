package main

import (
	"runtime"
	"testing"
	"time"
)

// settleGoroutines waits until the goroutine count drops to at most want.
func settleGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leakSlack allows for the process-wide goroutines libraries start once
// (kcp-go's timer scheduler, gRPC's and NATS's package-level workers).
const leakSlack = 16

func TestEverySystemRunsAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	base := runtime.NumGoroutine()
	for _, sys := range rpcSystems() {
		for _, payload := range []int{64, 64 << 10} {
			if sys.maxSize > 0 && payload > sys.maxSize {
				if _, err := sys.start(payload); err == nil {
					t.Errorf("%s accepted %d bytes", sys.name, payload)
				}
				continue
			}
			tg, err := sys.start(payload)
			if err != nil {
				t.Fatalf("%s: %v", sys.name, err)
			}
			for _, conc := range []int{1, 8} {
				if err := tg.Prepare(conc); err != nil {
					t.Fatal(err)
				}
				r := runClosedLoop(tg, payload, conc, 100, 60*time.Second, true) // a safety bound, not a goal
				if r.Done != 100 || r.Errors != 0 || len(r.Lat) != 100 {
					t.Errorf("%s %d B c=%d: done %d errors %d %v", sys.name, payload, conc, r.Done, r.Errors, r.ErrKinds)
				}
				if r.Cost.CPU <= 0 || r.Cost.Mallocs == 0 {
					t.Errorf("%s: no cost measured: %+v", sys.name, r.Cost)
				}
			}
			if err := tg.Close(); err != nil {
				t.Errorf("%s close: %v", sys.name, err)
			}
		}
	}
	for _, sys := range onewaySystems() {
		tg, err := sys.start(64)
		if err != nil {
			t.Fatalf("%s: %v", sys.name, err)
		}
		r := runOneWay(tg, 64, 500, 10*time.Second, true)
		if r.Sent != 500 || (!sys.lossy && r.Delivered != 500) || r.Delivered == 0 || r.Elapsed <= 0 {
			t.Errorf("%s: %+v", sys.name, r)
		}
		if err := tg.Close(); err != nil {
			t.Errorf("%s close: %v", sys.name, err)
		}
	}
	mf, err := startMeshFanout(4)
	if err != nil {
		t.Fatal(err)
	}
	if lat, err := mf.run(64, 2, 2, 5, 10*time.Second); err != nil || len(lat) != 5 {
		t.Errorf("SendMany rounds: %v %v", lat, err)
	}
	mf.Close()
	nf, err := startNATSFanout(4)
	if err != nil {
		t.Fatal(err)
	}
	if lat, err := nf.run(64, 2, 5, 10*time.Second); err != nil || len(lat) != 5 {
		t.Errorf("NATS rounds: %v %v", lat, err)
	}
	nf.Close()
	for _, viaMesh := range []bool{false, true} {
		m, err := measureSessionMemory(20, viaMesh)
		if err != nil || m.Sessions != 20 || m.HeapPerSess <= 0 {
			t.Errorf("session memory (mesh %v): %+v %v", viaMesh, m, err)
		}
	}
	settleGoroutines(t, base+leakSlack)
}

func TestRunStopsAtTimeLimit(t *testing.T) {
	slow := slowTarget{d: 5 * time.Millisecond}
	start := time.Now()
	r := runClosedLoop(slow, 64, 4, 1<<40, 100*time.Millisecond, false)
	if el := time.Since(start); el > time.Second || !r.TimedOut || r.Done == 0 {
		t.Fatalf("run took %v, timed out %v, done %d", el, r.TimedOut, r.Done)
	}
	r = runClosedLoop(slow, 64, 4, 10, time.Hour, false)
	if r.Done != 10 || r.TimedOut {
		t.Fatalf("count stop: %+v", r)
	}
}

type slowTarget struct{ d time.Duration }

func (s slowTarget) Prepare(int) error { return nil }
func (s slowTarget) Call([]byte) error { time.Sleep(s.d); return nil }
func (s slowTarget) Close() error      { return nil }
