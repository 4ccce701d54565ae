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
	case r.Lat != nil:
		logf("%-11s %-22s %6s c=%-3d n=%-3d l=%d: %8.0f/s p50 %7.1fus p99 %7.1fus  cpu %.2fs/M allocs %.1f err %d other %.2f",
			r.Suite, r.Name, sizeName(r.Payload), r.Conc, r.Nodes, r.Limit, r.Rate, r.Lat.P50, r.Lat.P99, r.CPUPerM, r.Allocs, r.Errors, r.Other)
	default:
		logf("%-11s %-22s %6s c=%-3d n=%-3d l=%d: %8.0f/s loss %.2f%%  cpu %.2fs/M allocs %.1f heap/sess %.0f other %.2f",
			r.Suite, r.Name, sizeName(r.Payload), r.Conc, r.Nodes, r.Limit, r.Rate, r.LossPct, r.CPUPerM, r.Allocs, r.HeapPer, r.Other)
	}
}

// rpcRun measures one system at one payload and concurrency on a started
// target.
func (b *bench) rpcRun(suite string, sys rpcSystem, t rpcTarget, payload, conc int, count int64) Record {
	rec := Record{Suite: suite, System: sys.key, Name: sys.name, Payload: payload, Conc: conc}
	if err := t.Prepare(conc); err != nil {
		rec.Err = err.Error()
		return rec
	}
	runClosedLoop(t, payload, conc, max(int64(conc)*20, 500), time.Second, false) // warm-up
	stop := b.profile(sys.key, fmt.Sprintf("%s-%s-%s-c%d", suite, sys.key, fileSize(payload), conc))
	r := runClosedLoop(t, payload, conc, count, b.duration, true)
	stop()
	rec.Count, rec.Errors, rec.Seconds, rec.TimedOut = r.Done, r.Errors, r.Elapsed.Seconds(), r.TimedOut
	rec.Rate = float64(r.Done) / r.Elapsed.Seconds()
	rec.MBps = rec.Rate * float64(payload) / 1e6
	lat := Summarize(r.Lat)
	rec.Lat = &lat
	rec.CPUPerM, rec.Allocs, rec.Other = r.Cost.perMillion(r.Done), r.Cost.allocsPer(r.Done), r.Cost.OtherCores
	if r.Done == 0 {
		rec.Err = fmt.Sprintf("no request completed (%d errors)", r.Errors)
	}
	return rec
}

func (b *bench) suiteRPC() {
	for _, payload := range b.payloads {
		for _, sys := range rpcSystems() {
			if b.skipSystem(sys.key) {
				continue
			}
			base := Record{Suite: "rpc", System: sys.key, Name: sys.name, Payload: payload}
			fail := func(msg string) {
				for _, c := range b.concs {
					r := base
					r.Conc, r.Err = c, msg
					b.add(r)
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
			for _, conc := range b.concs {
				count := countFor(b.tputCount, payload)
				if conc == 1 {
					count = countFor(b.latCount, payload)
				}
				b.add(b.rpcRun("rpc", sys, t, payload, conc, count))
			}
			if err := t.Close(); err != nil {
				logf("%s close: %v", sys.name, err)
			}
		}
	}
}

func (b *bench) onewayRun(suite string, sys onewaySystem, payload int, count int64) Record {
	rec := Record{Suite: suite, System: sys.key, Name: sys.name, Payload: payload}
	if b.overBudget(sys.name) {
		rec.Err = "skipped: time budget spent"
		return rec
	}
	t, err := sys.start(payload)
	if err != nil {
		rec.Err = "setup: " + err.Error()
		return rec
	}
	defer func() {
		if err := t.Close(); err != nil {
			logf("%s close: %v", sys.name, err)
		}
	}()
	runOneWay(t, payload, 2000, time.Second, false) // warm-up
	stop := b.profile(sys.key, fmt.Sprintf("%s-%s-%s", suite, sys.key, fileSize(payload)))
	r := runOneWay(t, payload, count, b.duration, true)
	stop()
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

func (b *bench) suiteOneWay() {
	for _, payload := range b.owPayloads {
		for _, sys := range onewaySystems() {
			if b.skipSystem(sys.key) {
				continue
			}
			b.add(b.onewayRun("oneway", sys, payload, b.owCount))
		}
	}
}

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

func (b *bench) suiteFanout() {
	for _, n := range b.fanNodes {
		if !b.skipSystem(sysMarsmesh) {
			if b.overBudget("fan-out") {
				for _, l := range b.fanLimits {
					b.add(Record{Suite: "fanout", System: sysMarsmesh, Name: "marsmesh SendMany", Nodes: n, Limit: l, Payload: b.fanPayload, Err: "skipped: time budget spent"})
				}
			} else if f, err := startMeshFanout(n); err != nil {
				for _, l := range b.fanLimits {
					b.add(Record{Suite: "fanout", System: sysMarsmesh, Name: "marsmesh SendMany", Nodes: n, Limit: l, Payload: b.fanPayload, Err: "setup: " + err.Error()})
				}
			} else {
				for _, l := range b.fanLimits {
					f.run(b.fanPayload, l, 10, 0, time.Second) // warm-up: every session of this tree
					var m costMeter
					m.start()
					stop := b.profile(sysMarsmesh, fmt.Sprintf("fanout-marsmesh-n%d-l%d", n, l))
					lat, err := f.run(b.fanPayload, l, 0, b.fanRounds, b.duration)
					stop()
					b.add(fanRecord(sysMarsmesh, "marsmesh SendMany", n, l, b.fanPayload, lat, m.stop(), err))
				}
				if err := f.Close(); err != nil {
					logf("fan-out close: %v", err)
				}
			}
		}
		if !b.skipSystem(sysNATS) {
			rec := Record{Suite: "fanout", System: sysNATS, Name: "NATS publish", Nodes: n, Payload: b.fanPayload}
			if b.overBudget("NATS fan-out") {
				rec.Err = "skipped: time budget spent"
				b.add(rec)
			} else if f, err := startNATSFanout(n); err != nil {
				rec.Err = "setup: " + err.Error()
				b.add(rec)
			} else {
				f.run(b.fanPayload, 10, 0, time.Second)
				var m costMeter
				m.start()
				lat, err := f.run(b.fanPayload, 0, b.fanRounds, b.duration)
				b.add(fanRecord(sysNATS, "NATS publish", n, 0, b.fanPayload, lat, m.stop(), err))
				f.Close()
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
		b.add(b.rpcRun("cost-rpc", sys, t, 64, 16, b.costRPC))
		t.Close()
	}
	for _, sys := range onewaySystems() {
		if b.skipSystem(sys.key) {
			continue
		}
		b.add(b.onewayRun("cost-oneway", sys, 64, b.costOW))
	}
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
