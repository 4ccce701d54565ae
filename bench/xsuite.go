package main

import (
	"fmt"
	"os"
	"time"
)

// The cross-process suites (xrpc, xoneway): every system's server end runs
// in child processes (a fleet, started once per run), its client end in
// this process, over 127.0.0.1. A case is measured in rounds; in every
// round each system runs once (in a rotating order), and its figures for
// the round are kept, so that ratios can be taken between systems measured
// in the same round. A record's figures are the medians over its rounds.

// RoundFig is one system's figures in one round of a case.
type RoundFig struct {
	Done    int64   `json:"done"`
	Errors  int64   `json:"errors,omitempty"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
	P50     float64 `json:"p50_us,omitempty"`
	P99     float64 `json:"p99_us,omitempty"`
	P999    float64 `json:"p999_us,omitempty"`
	Max     float64 `json:"max_us,omitempty"`
	LossPct float64 `json:"loss_pct,omitempty"`
	// Per request (or delivered message), over every process of the system.
	Ctx     float64 `json:"ctx_switches"`
	Dgrams  float64 `json:"udp_datagrams"`
	Segs    float64 `json:"tcp_segments"`
	CPUPerM float64 `json:"cpu_s_per_million"`
	Other   float64 `json:"other_cores"`
	Valid   bool    `json:"counters_valid"`
	// Retx: reliable segments sent again per 1,000 requests, both ends
	// (marsmesh only: its transports' counters).
	Retx float64 `json:"retransmits_per_k,omitempty"`
	// Run is, in a merged report, which source run (from 1) the round is
	// of; 0 in a run's own report.
	Run int `json:"run,omitempty"`
}

func roundFig(done, errs int64, el time.Duration, lat []time.Duration, c xcost) RoundFig {
	f := RoundFig{Done: done, Errors: errs, Seconds: el.Seconds(), Other: c.OtherCores, Valid: c.Valid}
	if el > 0 {
		f.Rate = float64(done) / el.Seconds()
	}
	if len(lat) > 0 {
		l := Summarize(lat)
		f.P50, f.P99, f.P999, f.Max = l.P50, l.P99, l.P999, l.Max
	}
	if done > 0 {
		f.Ctx = float64(c.Ctx) / float64(done)
		f.Dgrams = float64(c.UDPOut) / float64(done)
		f.Segs = float64(c.TCPOut) / float64(done)
		f.CPUPerM = c.CPU.Seconds() / float64(done) * 1e6
	}
	return f
}

// fromRounds fills a record's figures with the medians of its rounds
// (rounds that completed nothing are left out).
func (r *Record) fromRounds(rounds []RoundFig) {
	r.Rounds = rounds
	med := func(f func(RoundFig) float64) float64 {
		var xs []float64
		for _, x := range rounds {
			if x.Done > 0 {
				xs = append(xs, f(x))
			}
		}
		v := Median(xs)
		if v != v { // NaN: JSON has none
			return 0
		}
		return v
	}
	var lat Latency
	for _, x := range rounds {
		r.Count += x.Done
		r.Errors += x.Errors
		r.Seconds += x.Seconds
		lat.N += int(x.Done)
		lat.Max = max(lat.Max, x.Max)
	}
	lat.P50 = med(func(x RoundFig) float64 { return x.P50 })
	lat.P99 = med(func(x RoundFig) float64 { return x.P99 })
	lat.P999 = med(func(x RoundFig) float64 { return x.P999 })
	if lat.P50 > 0 {
		r.Lat = &lat
	}
	r.Rate = med(func(x RoundFig) float64 { return x.Rate })
	r.MBps = r.Rate * float64(r.Payload) / 1e6
	r.LossPct = med(func(x RoundFig) float64 { return x.LossPct })
	r.CtxPer = med(func(x RoundFig) float64 { return x.Ctx })
	r.DgramsPer = med(func(x RoundFig) float64 { return x.Dgrams })
	r.SegsPer = med(func(x RoundFig) float64 { return x.Segs })
	r.CPUPerM = med(func(x RoundFig) float64 { return x.CPUPerM })
	r.Other = med(func(x RoundFig) float64 { return x.Other })
	r.RetxPerK = med(func(x RoundFig) float64 { return x.Retx })
	if r.Count == 0 && r.Err == "" {
		r.Err = fmt.Sprintf("nothing completed (%d errors)", r.Errors)
	}
}

// fleet returns the running server end of a system, starting it on first
// use; a system whose fleet failed to start fails every later call.
func (b *bench) fleet(key string) (*fleet, error) {
	if key == sysMarsmeshUSend {
		key = sysMarsmesh // one node serves Send and USend
	}
	if f := b.fleets[key]; f != nil {
		return f, nil
	}
	if err := b.fleetErr[key]; err != nil {
		return nil, err
	}
	t0 := time.Now()
	f, err := spawnFleet(key, "", "127.0.0.1")
	if err != nil {
		b.fleetErr[key] = err
		return nil, err
	}
	logf("%s: %d server processes started in %.2f s", key, len(f.procs), time.Since(t0).Seconds())
	b.fleets[key] = f
	return f, nil
}

// closeFleets stops every fleet.
func (b *bench) closeFleets() {
	for k, f := range b.fleets {
		if err := f.Close(); err != nil {
			logf("%s server processes: %v", k, err)
		}
		delete(b.fleets, k)
	}
}

type xliveRPC struct {
	sys    rpcSystem
	t      rpcTarget
	pids   []int
	err    string
	rounds []RoundFig
	kinds  map[string]int64
}

// xconcs are the concurrencies of the cross-process request/response suite.
func (b *bench) xconcs() []int {
	if flagSet("concs") {
		return b.concs
	}
	return []int{1, 64}
}

func (b *bench) suiteXRPC() {
	for _, payload := range b.payloads {
		var lives []*xliveRPC
		for _, sys := range rpcSystems() {
			if b.skipSystem(sys.key) {
				continue
			}
			fail := func(msg string) {
				for _, c := range b.xconcs() {
					b.add(Record{Suite: "xrpc", System: sys.key, Name: sys.name, Payload: payload, Conc: c, Err: msg})
				}
			}
			if sys.maxSize > 0 && payload > sys.maxSize {
				fail(fmt.Sprintf("n/a: above the %d-byte datagram limit", sys.maxSize))
				continue
			}
			if b.overBudget(sys.name) {
				fail("skipped: time budget spent")
				continue
			}
			f, err := b.fleet(sys.key)
			if err != nil {
				fail("setup: " + err.Error())
				continue
			}
			t, err := dialRPC(sys.key, "127.0.0.1", f.eps, payload)
			if err != nil {
				fail("setup: " + err.Error())
				continue
			}
			if m, ok := t.(*meshRPC); ok {
				m.server = f.procs[len(f.procs)-1] // the serving node's child
			}
			lives = append(lives, &xliveRPC{sys: sys, t: t, pids: append([]int{os.Getpid()}, f.pids()...)})
		}
		for _, conc := range b.xconcs() {
			over := b.overBudget(fmt.Sprintf("cross-process request/response %s c=%d", sizeName(payload), conc))
			for _, l := range lives {
				l.err, l.rounds, l.kinds = "", nil, nil
				if over {
					l.err = "skipped: time budget spent"
				} else if err := l.t.Prepare(conc); err != nil {
					l.err = err.Error()
				} else {
					warmRPC(l.t, payload, conc)
				}
			}
			count := countFor(b.tputCount, payload)
			if conc == 1 {
				count = countFor(b.latCount, payload)
			}
			n := b.xrounds
			sliceCount, sliceDur := (count+int64(n)-1)/int64(n), b.duration/time.Duration(n)
			turns(len(lives), n, func(i, _ int) {
				l := lives[i]
				if l.err != "" {
					return
				}
				s0, x0 := takeSnap(l.pids), retransmits(l.t)
				r := runClosedLoop(l.t, payload, conc, sliceCount, sliceDur, false)
				c := takeSnap(l.pids).since(s0)
				f := roundFig(r.Done, r.Errors, r.Elapsed, r.Lat, c)
				if x1 := retransmits(l.t); x0 >= 0 && x1 >= 0 && r.Done > 0 {
					f.Retx = (x1 - x0) / float64(r.Done) * 1000
				}
				l.rounds = append(l.rounds, f)
				for k, v := range r.ErrKinds {
					if l.kinds == nil {
						l.kinds = map[string]int64{}
					}
					l.kinds[k] += v
				}
			})
			for _, l := range lives {
				rec := Record{Suite: "xrpc", System: l.sys.key, Name: l.sys.name, Payload: payload, Conc: conc,
					Procs: len(l.pids), Err: l.err, ErrKinds: l.kinds}
				if l.err == "" {
					rec.fromRounds(l.rounds)
				}
				b.add(rec)
			}
		}
		for _, l := range lives {
			if err := l.t.Close(); err != nil {
				logf("%s close: %v", l.sys.name, err)
			}
		}
	}
}

type xliveOneWay struct {
	sys    onewaySystem
	t      onewayTarget
	pids   []int
	rounds []RoundFig
}

func (b *bench) suiteXOneWay() {
	for _, payload := range b.owPayloads {
		lives := b.xOneWayStart("xoneway", onewaySystems(), payload, func(key string, f *fleet) (onewayTarget, error) {
			return dialOneWay(key, "127.0.0.1", f)
		})
		b.xOneWayRounds("xoneway", lives, payload, b.owCount)
	}
}

// xOneWayStart dials and warms up the sending end of each of systems for
// a cross-process one-way suite (xoneway, xstream); a system that cannot
// start gets its record with the reason.
func (b *bench) xOneWayStart(suite string, systems []onewaySystem, payload int, dial func(string, *fleet) (onewayTarget, error)) []*xliveOneWay {
	var lives []*xliveOneWay
	for _, sys := range systems {
		if b.skipSystem(sys.key) {
			continue
		}
		rec := Record{Suite: suite, System: sys.key, Name: sys.name, Payload: payload}
		if b.overBudget(sys.name) {
			rec.Err = "skipped: time budget spent"
			b.add(rec)
			continue
		}
		f, err := b.fleet(sys.key)
		if err == nil {
			var t onewayTarget
			if t, err = dial(sys.key, f); err == nil {
				runOneWay(t, payload, 2000, time.Second, false) // warm-up
				lives = append(lives, &xliveOneWay{sys: sys, t: t, pids: append([]int{os.Getpid()}, f.pids()...)})
				continue
			}
		}
		rec.Err = "setup: " + err.Error()
		b.add(rec)
	}
	return lives
}

// xOneWayRounds measures one payload of a cross-process one-way suite
// (xoneway, xstream) in rounds, records it and closes the senders.
func (b *bench) xOneWayRounds(suite string, lives []*xliveOneWay, payload int, count int64) {
	n := b.xrounds
	sliceCount, sliceDur := (count+int64(n)-1)/int64(n), b.duration/time.Duration(n)
	turns(len(lives), n, func(i, _ int) {
		l := lives[i]
		s0 := takeSnap(l.pids)
		r := runOneWay(l.t, payload, sliceCount, sliceDur, false)
		c := takeSnap(l.pids).since(s0)
		f := roundFig(r.Delivered, r.SendErrors, r.Elapsed, nil, c)
		if r.Sent > 0 {
			f.LossPct = float64(r.Sent-r.Delivered) / float64(r.Sent) * 100
		}
		l.rounds = append(l.rounds, f)
	})
	for _, l := range lives {
		rec := Record{Suite: suite, System: l.sys.key, Name: l.sys.name, Payload: payload, Procs: len(l.pids)}
		rec.fromRounds(l.rounds)
		b.add(rec)
		if err := l.t.Close(); err != nil {
			logf("%s close: %v", l.sys.name, err)
		}
	}
}
