package main

import (
	"fmt"
	"time"
)

func (b *bench) add(r Record) {
	b.run.Records = append(b.run.Records, r)
	switch {
	case r.Err != "":
		logf("%-11s %-22s %6s c=%-3d n=%-3d l=%d: %s", r.Suite, r.Name, sizeName(r.Payload), r.Conc, r.Nodes, r.Limit, r.Err)
	case r.Rounds != nil:
		for k, v := range r.ErrKinds {
			logf("  %d requests failed with: %s", v, k)
		}
		logf("%-11s %-22s %6s c=%-3d n=%-3d l=%d loss=%g%%: %8.0f/s p50 %7.1fus p99 %7.1fus  per msg: ctx %.2f dgrams %.2f tcp %.2f cpu %.1fus retx %.2f/k  other %.2f",
			r.Suite, r.Name, sizeName(r.Payload), r.Conc, r.Nodes, r.Limit, r.Loss, r.Rate, latOr0(r.Lat, 50), latOr0(r.Lat, 99), r.CtxPer, r.DgramsPer, r.SegsPer, r.CPUPerM, r.RetxPerK, r.Other)
	case r.Lat != nil:
		for k, v := range r.ErrKinds {
			logf("  %d requests failed with: %s", v, k)
		}
		logf("%-11s %-22s %6s c=%-3d n=%-3d l=%d: %8.0f/s p50 %7.1fus p99 %7.1fus  cpu %.2fs/M allocs %.1f err %d other %.2f",
			r.Suite, r.Name, sizeName(r.Payload), r.Conc, r.Nodes, r.Limit, r.Rate, r.Lat.P50, r.Lat.P99, r.CPUPerM, r.Allocs, r.Errors, r.Other)
	default:
		logf("%-11s %-22s %6s c=%-3d n=%-3d l=%d: %8.0f/s loss %.2f%%  cpu %.2fs/M allocs %.1f heap/sess %.0f other %.2f",
			r.Suite, r.Name, sizeName(r.Payload), r.Conc, r.Nodes, r.Limit, r.Rate, r.LossPct, r.CPUPerM, r.Allocs, r.HeapPer, r.Other)
	}
}

// The systems of a suite run side by side: every target of a payload is
// started, then each case is measured in b.rounds slices, the systems
// taking turns (in a rotating order), so that load from outside this
// process falls on all of them alike rather than on whichever ran at the
// wrong moment. A system's figures are the sums over its slices.

// add merges one slice into the total.
func (r *runResult) add(s runResult) {
	r.Done += s.Done
	r.Errors += s.Errors
	r.Lat = append(r.Lat, s.Lat...)
	r.TimedOut = r.TimedOut || s.TimedOut
	for k, v := range s.ErrKinds {
		if r.ErrKinds == nil {
			r.ErrKinds = map[string]int64{}
		}
		if _, ok := r.ErrKinds[k]; ok || len(r.ErrKinds) < 8 {
			r.ErrKinds[k] += v
		}
	}
	r.Cost.add(s.Cost, r.Elapsed, s.Elapsed)
	r.Elapsed += s.Elapsed
}

// add merges the cost of a slice that took el2 into one that took el1.
func (c *cost) add(o cost, el1, el2 time.Duration) {
	c.CPU += o.CPU
	c.Mallocs += o.Mallocs
	c.AllocBytes += o.AllocBytes
	switch {
	case c.OtherCores < 0 || o.OtherCores < 0:
		c.OtherCores = -1
	case el1+el2 > 0:
		c.OtherCores = (c.OtherCores*el1.Seconds() + o.OtherCores*el2.Seconds()) / (el1 + el2).Seconds()
	}
}

// slices returns how many slices a case is cut into (one while profiling,
// so each profile covers a whole case).
func (b *bench) slices() int {
	if b.profileDir != "" {
		return 1
	}
	return max(b.rounds, 1)
}

// turns calls f(i, round) for every system i in every round, rotating the
// order from round to round.
func turns(n, rounds int, f func(i, round int)) {
	for round := range rounds {
		for k := range n {
			f((k+round)%n, round)
		}
	}
}

func rpcRecord(suite string, sys rpcSystem, payload, conc int, r runResult) Record {
	rec := Record{Suite: suite, System: sys.key, Name: sys.name, Payload: payload, Conc: conc}
	rec.Count, rec.Errors, rec.Seconds, rec.TimedOut = r.Done, r.Errors, r.Elapsed.Seconds(), r.TimedOut
	if r.Elapsed > 0 {
		rec.Rate = float64(r.Done) / r.Elapsed.Seconds()
	}
	rec.MBps = rec.Rate * float64(payload) / 1e6
	lat := Summarize(r.Lat)
	rec.Lat = &lat
	rec.CPUPerM, rec.Allocs, rec.Other = r.Cost.perMillion(r.Done), r.Cost.allocsPer(r.Done), r.Cost.OtherCores
	rec.ErrKinds = r.ErrKinds
	if r.Done == 0 {
		rec.Err = fmt.Sprintf("no request completed (%d errors)", r.Errors)
	}
	return rec
}

func warmRPC(t rpcTarget, payload, conc int) {
	runClosedLoop(t, payload, conc, max(int64(conc)*20, 500), time.Second, false)
}

type liveRPC struct {
	sys rpcSystem
	t   rpcTarget
	err string // this case failed for the system
	acc runResult
}

func (b *bench) suiteRPC() {
	for _, payload := range b.payloads {
		var lives []*liveRPC
		for _, sys := range rpcSystems() {
			if b.skipSystem(sys.key) {
				continue
			}
			fail := func(msg string) {
				for _, c := range b.concs {
					b.add(Record{Suite: "rpc", System: sys.key, Name: sys.name, Payload: payload, Conc: c, Err: msg})
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
			t, err := sys.start(payload)
			if err != nil {
				fail("setup: " + err.Error())
				continue
			}
			lives = append(lives, &liveRPC{sys: sys, t: t})
		}
		for _, conc := range b.concs {
			over := b.overBudget(fmt.Sprintf("request/response %s c=%d", sizeName(payload), conc))
			for _, l := range lives {
				l.err, l.acc = "", runResult{}
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
			n := b.slices()
			sliceCount, sliceDur := (count+int64(n)-1)/int64(n), b.duration/time.Duration(n)
			turns(len(lives), n, func(i, _ int) {
				l := lives[i]
				if l.err != "" {
					return
				}
				stop := b.profile(l.sys.key, fmt.Sprintf("rpc-%s-%s-c%d", l.sys.key, fileSize(payload), conc))
				l.acc.add(runClosedLoop(l.t, payload, conc, sliceCount, sliceDur, true))
				stop()
			})
			for _, l := range lives {
				rec := rpcRecord("rpc", l.sys, payload, conc, l.acc)
				if l.err != "" {
					rec = Record{Suite: "rpc", System: l.sys.key, Name: l.sys.name, Payload: payload, Conc: conc, Err: l.err}
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

func onewayRecord(suite string, sys onewaySystem, payload int, r onewayResult) Record {
	rec := Record{Suite: suite, System: sys.key, Name: sys.name, Payload: payload}
	rec.Count, rec.Sent, rec.Errors, rec.Seconds = r.Delivered, r.Sent, r.SendErrors, r.Elapsed.Seconds()
	if r.Elapsed > 0 {
		rec.Rate = float64(r.Delivered) / r.Elapsed.Seconds()
	}
	rec.MBps = rec.Rate * float64(payload) / 1e6
	if r.Sent > 0 {
		rec.LossPct = float64(r.Sent-r.Delivered) / float64(r.Sent) * 100
	}
	rec.CPUPerM, rec.Allocs, rec.Other = r.Cost.perMillion(r.Delivered), r.Cost.allocsPer(r.Delivered), r.Cost.OtherCores
	if r.Delivered == 0 {
		rec.Err = fmt.Sprintf("nothing delivered (%d sent, %d send errors)", r.Sent, r.SendErrors)
	}
	return rec
}

func (r *onewayResult) add(s onewayResult) {
	r.Sent += s.Sent
	r.Delivered += s.Delivered
	r.SendErrors += s.SendErrors
	r.Cost.add(s.Cost, r.Elapsed, s.Elapsed)
	r.Elapsed += s.Elapsed
}

type liveOneWay struct {
	sys onewaySystem
	t   onewayTarget
	acc onewayResult
}

// onewaySuite measures one-way systems side by side at each payload
// (counts of payloads above 4 KiB scaled down by countFor).
func (b *bench) onewaySuite(suite string, systems []onewaySystem, payloads []int, count int64) {
	for _, payload := range payloads {
		var lives []*liveOneWay
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
			t, err := sys.start(payload)
			if err != nil {
				rec.Err = "setup: " + err.Error()
				b.add(rec)
				continue
			}
			runOneWay(t, payload, 2000, time.Second, false) // warm-up
			lives = append(lives, &liveOneWay{sys: sys, t: t})
		}
		n := b.slices()
		sliceCount, sliceDur := (countFor(count, payload)+int64(n)-1)/int64(n), b.duration/time.Duration(n)
		turns(len(lives), n, func(i, _ int) {
			l := lives[i]
			stop := b.profile(l.sys.key, fmt.Sprintf("%s-%s-%s", suite, l.sys.key, fileSize(payload)))
			l.acc.add(runOneWay(l.t, payload, sliceCount, sliceDur, true))
			stop()
		})
		for _, l := range lives {
			b.add(onewayRecord(suite, l.sys, payload, l.acc))
			if err := l.t.Close(); err != nil {
				logf("%s close: %v", l.sys.name, err)
			}
		}
	}
}

func (b *bench) suiteOneWay() { b.onewaySuite("oneway", onewaySystems(), b.owPayloads, b.owCount) }

func fanRecord(system, name string, nodes, limit, payload int, lat []time.Duration, c cost, err error) Record {
	rec := Record{Suite: "fanout", System: system, Name: name, Nodes: nodes, Limit: limit, Payload: payload}
	if len(lat) > 0 {
		l := Summarize(lat)
		rec.Lat = &l
		rec.Count = int64(len(lat))
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		rec.Seconds = sum.Seconds()
		rec.Rate = float64(len(lat)) / sum.Seconds()
		// per delivered message
		rec.CPUPerM, rec.Allocs = c.perMillion(int64(len(lat)*nodes)), c.allocsPer(int64(len(lat)*nodes))
		rec.Other = c.OtherCores
	}
	if err != nil {
		rec.Err = err.Error()
	} else if len(lat) == 0 {
		rec.Err = errNoRounds.Error()
	}
	return rec
}

// fanCase is one fan-out configuration measured side by side with the
// others of the same receiver count.
type fanCase struct {
	system, name string
	limit        int
	run          func(warm, rounds int, d time.Duration) ([]time.Duration, error)
	lat          []time.Duration
	cost         cost
	err          error
}

func (b *bench) suiteFanout() {
	for _, n := range b.fanNodes {
		var cases []*fanCase
		var closers []func() error
		skip := func(system, name string, limit int, msg string) {
			b.add(Record{Suite: "fanout", System: system, Name: name, Nodes: n, Limit: limit, Payload: b.fanPayload, Err: msg})
		}
		if !b.skipSystem(sysMarsmesh) {
			if b.overBudget("fan-out") {
				for _, l := range b.fanLimits {
					skip(sysMarsmesh, "marsmesh SendMany", l, "skipped: time budget spent")
				}
			} else if f, err := startMeshFanout(n); err != nil {
				for _, l := range b.fanLimits {
					skip(sysMarsmesh, "marsmesh SendMany", l, "setup: "+err.Error())
				}
			} else {
				closers = append(closers, f.Close)
				for _, l := range b.fanLimits {
					cases = append(cases, &fanCase{system: sysMarsmesh, name: "marsmesh SendMany", limit: l,
						run: func(warm, rounds int, d time.Duration) ([]time.Duration, error) {
							return f.run(b.fanPayload, l, warm, rounds, d)
						}})
				}
			}
		}
		if !b.skipSystem(sysNATS) {
			if b.overBudget("NATS fan-out") {
				skip(sysNATS, "NATS publish", 0, "skipped: time budget spent")
			} else if f, err := startNATSFanout(n); err != nil {
				skip(sysNATS, "NATS publish", 0, "setup: "+err.Error())
			} else {
				closers = append(closers, f.Close)
				cases = append(cases, &fanCase{system: sysNATS, name: "NATS publish",
					run: func(warm, rounds int, d time.Duration) ([]time.Duration, error) {
						return f.run(b.fanPayload, warm, rounds, d)
					}})
			}
		}
		for _, c := range cases {
			_, c.err = c.run(10, 0, time.Second) // warm-up: every session of this tree
		}
		slices := b.slices()
		rounds, d := (b.fanRounds+slices-1)/slices, b.duration/time.Duration(slices)
		turns(len(cases), slices, func(i, _ int) {
			c := cases[i]
			if c.err != nil {
				return
			}
			var m costMeter
			m.start()
			stop := b.profile(c.system, fmt.Sprintf("fanout-%s-n%d-l%d", c.system, n, c.limit))
			lat, err := c.run(2, rounds, d)
			stop()
			cs := m.stop()
			var el time.Duration
			for _, x := range c.lat {
				el += x
			}
			var sel time.Duration
			for _, x := range lat {
				sel += x
			}
			c.cost.add(cs, el, sel)
			c.lat, c.err = append(c.lat, lat...), err
		})
		for _, c := range cases {
			b.add(fanRecord(c.system, c.name, n, c.limit, b.fanPayload, c.lat, c.cost, c.err))
		}
		for _, cl := range closers {
			if err := cl(); err != nil {
				logf("fan-out close: %v", err)
			}
		}
	}
}

func (b *bench) suiteCost() {
	for _, sys := range rpcSystems() {
		if b.skipSystem(sys.key) {
			continue
		}
		rec := Record{Suite: "cost-rpc", System: sys.key, Name: sys.name, Payload: 64, Conc: 16}
		if b.overBudget(sys.name) {
			rec.Err = "skipped: time budget spent"
			b.add(rec)
			continue
		}
		t, err := sys.start(64)
		if err != nil {
			rec.Err = "setup: " + err.Error()
			b.add(rec)
			continue
		}
		if err := t.Prepare(16); err != nil {
			rec.Err = err.Error()
			b.add(rec)
			t.Close()
			continue
		}
		warmRPC(t, 64, 16)
		stop := b.profile(sys.key, "cost-rpc-"+sys.key)
		r := runClosedLoop(t, 64, 16, b.costRPC, b.duration, true)
		stop()
		b.add(rpcRecord("cost-rpc", sys, 64, 16, r))
		t.Close()
	}
	b.onewaySuite("cost-oneway", onewaySystems(), []int{64}, b.costOW)
	for _, viaMesh := range []bool{false, true} {
		sys, name := "rudp", "rudp Transport"
		if viaMesh {
			sys, name = sysMarsmesh, "mesh Node (Send)"
		}
		if b.skipSystem(sys) && !(sys == "rudp" && !b.skipSystem(sysMarsmesh)) {
			continue
		}
		rec := Record{Suite: "memory", System: sys, Name: name, Nodes: b.sessions}
		if b.overBudget("session memory") {
			rec.Err = "skipped: time budget spent"
			b.add(rec)
			continue
		}
		m, err := measureSessionMemory(b.sessions, viaMesh)
		if err != nil {
			rec.Err = err.Error()
		} else {
			rec.HeapPer, rec.GorPer, rec.Seconds, rec.Count = m.HeapPerSess, m.GoroutinesPer, m.Setup.Seconds(), int64(m.Sessions)
		}
		b.add(rec)
	}
}

func latOr0(l *Latency, q int) float64 {
	switch {
	case l == nil:
		return 0
	case q == 50:
		return l.P50
	}
	return l.P99
}
