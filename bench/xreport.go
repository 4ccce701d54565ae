package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// roundRatios is mine/peer of f in every round both measured (the
// systems of a case take turns within a round, so a round's ratio
// compares figures taken under the same outside load). In a merged
// report the rounds of every source run count, paired within their run.
func roundRatios(mine, peer *Record, f func(RoundFig) float64) []float64 {
	if mine == nil || peer == nil || mine.Err != "" || peer.Err != "" {
		return nil
	}
	var out []float64
	mr, pr := roundsByRun(mine.Rounds), roundsByRun(peer.Rounds)
	for _, run := range runOrder(mine.Rounds) {
		ms, ps := mr[run], pr[run]
		for i := 0; i < len(ms) && i < len(ps); i++ {
			m, p := ms[i], ps[i]
			if m.Done > 0 && p.Done > 0 && f(p) > 0 {
				out = append(out, f(m)/f(p))
			}
		}
	}
	return out
}

// roundsByRun groups rounds by their source run, in order.
func roundsByRun(rs []RoundFig) map[int][]RoundFig {
	out := map[int][]RoundFig{}
	for _, r := range rs {
		out[r.Run] = append(out[r.Run], r)
	}
	return out
}

// runOrder is the source runs of rounds in the order they first appear.
func runOrder(rs []RoundFig) []int {
	var out []int
	for _, r := range rs {
		if !slices.Contains(out, r.Run) {
			out = append(out, r.Run)
		}
	}
	return out
}

func fP50(x RoundFig) float64  { return x.P50 }
func fP99(x RoundFig) float64  { return x.P99 }
func fRate(x RoundFig) float64 { return x.Rate }

// xratio renders the median of per-round ratios.
func xratio(mine, peer *Record, f func(RoundFig) float64) string {
	return fmtRatio(Median(roundRatios(mine, peer, f)))
}

func (r *Record) ok() bool { return r != nil && r.Err == "" }

// findLoss is find for the lossy suite.
func (run *Run) findLoss(system string, payload int, loss float64) *Record {
	for i := range run.Records {
		x := &run.Records[i]
		if x.Suite == "lossy" && x.System == system && x.Payload == payload && x.Loss == loss {
			return x
		}
	}
	return nil
}

func latCell(r *Record) string {
	if !r.ok() || r.Lat == nil {
		return cellErr(r)
	}
	return fmt.Sprintf("%s / %s / %s", fmtUs(r.Lat.P50), fmtUs(r.Lat.P99), fmtUs(r.Lat.P999))
}

// xTables renders the cross-process suites.
func xTables(b *strings.Builder, run Run) {
	rs := recs(run, "xrpc")
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	if len(rs) > 0 {
		cols := columns(rs)
		payloads := distinct(rs, func(r Record) int { return r.Payload })
		concs := distinct(rs, func(r Record) int { return r.Conc })
		rounds := 0
		for _, r := range rs {
			rounds = max(rounds, len(r.Rounds)/max(r.Runs, 1)) // a merged record holds every run's rounds
		}
		w("## Request/response across processes (echo of the payload)\n\n")
		w("Each system's server end runs in its own processes (marsmesh: a MARS registry process and the serving node's\n")
		w("process; NATS: a nats-server process and the responder's process; gRPC, kcp-go and raw UDP: one echo server\n")
		w("process), its client end in the bench process, over 127.0.0.1. Each case ran in %d rounds, the systems taking\n", rounds)
		w("turns within a round; figures are medians of the rounds' figures, ratios medians of the rounds' ratios.\n\n")
		w("### Latency at concurrency 1 (µs: p50 / p99 / p99.9)\n\n")
		header(b, []string{"payload"}, cols, "marsmesh / raw UDP (p50)", "marsmesh / gRPC (p50)", "marsmesh / NATS (p50)", "marsmesh / raw UDP (p99)")
		for _, p := range payloads {
			w("| %s |", sizeName(p))
			for _, c := range cols {
				w(" %s |", latCell(run.find("xrpc", c.key, p, 1, 0, 0)))
			}
			m := run.find("xrpc", sysMarsmesh, p, 1, 0, 0)
			w(" %s | %s | %s | %s |\n", xratio(m, run.find("xrpc", sysUDP, p, 1, 0, 0), fP50),
				xratio(m, run.find("xrpc", sysGRPC, p, 1, 0, 0), fP50), xratio(m, run.find("xrpc", sysNATS, p, 1, 0, 0), fP50),
				xratio(m, run.find("xrpc", sysUDP, p, 1, 0, 0), fP99))
		}
		w("\n### Throughput (requests/s; closed loop of `c` concurrent callers on one connection)\n\n")
		header(b, []string{"payload", "c"}, cols, "marsmesh / NATS", "marsmesh / gRPC")
		for _, p := range payloads {
			for _, cc := range concs {
				if cc == 1 {
					continue
				}
				w("| %s | %d |", sizeName(p), cc)
				for _, c := range cols {
					r := run.find("xrpc", c.key, p, cc, 0, 0)
					if !r.ok() {
						w(" %s |", cellErr(r))
						continue
					}
					cell := fmtRate(r.Rate)
					if r.Errors > 0 {
						cell += fmt.Sprintf(" (%s errors)", thousands(r.Errors))
					}
					w(" %s |", cell)
				}
				m := run.find("xrpc", sysMarsmesh, p, cc, 0, 0)
				w(" %s | %s |\n", xratio(m, run.find("xrpc", sysNATS, p, cc, 0, 0), fRate), xratio(m, run.find("xrpc", sysGRPC, p, cc, 0, 0), fRate))
			}
		}
		w("\n### Cost per request, all processes of the system\n\n")
		w("Cells: context switches / packets / CPU µs per request. Context switches: voluntary + nonvoluntary, summed over\n")
		w("every thread of the bench process and the system's server processes (`/proc/PID/task/*/status`). Packets: UDP\n")
		w("datagrams sent (`/proc/net/snmp` Udp OutDatagrams; `T` marks TCP segments, Tcp OutSegs), both directions;\n")
		w("these counters cover the whole network namespace, so other traffic on the machine is included. CPU: utime +\n")
		w("stime of the same processes (`/proc/PID/stat`). The bench process also holds the idle client ends of the other\n")
		w("systems.\n\n")
		header(b, []string{"payload", "c"}, cols)
		for _, p := range payloads {
			for _, cc := range concs {
				w("| %s | %d |", sizeName(p), cc)
				for _, c := range cols {
					w(" %s |", costCell(run.find("xrpc", c.key, p, cc, 0, 0)))
				}
				w("\n")
			}
		}
		w("\n")
		failures(b, rs)
		requestErrors(b, rs)
	}
	if ow := recs(run, "xoneway"); len(ow) > 0 {
		cols := columns(ow)
		w("## One-way messages across processes (one sender, counted at the receiver's process)\n\n")
		w("Cells: delivered msgs/s, the share lost where delivery is not guaranteed, and per delivered message:\n")
		w("context switches / packets / CPU µs, as above.\n\n")
		header(b, []string{"payload"}, cols, "Send / NATS", "USend / NATS")
		for _, p := range distinct(ow, func(r Record) int { return r.Payload }) {
			w("| %s |", sizeName(p))
			for _, c := range cols {
				r := run.find("xoneway", c.key, p, 0, 0, 0)
				if !r.ok() {
					w(" %s |", cellErr(r))
					continue
				}
				cell := fmtRate(r.Rate) + "/s"
				if r.LossPct > 0 || c.key == sysMarsmeshUSend || c.key == sysNATS {
					cell += fmt.Sprintf(", %s%% lost", fmtNum(r.LossPct))
				}
				w(" %s; %s |", cell, costCell(r))
			}
			n := run.find("xoneway", sysNATS, p, 0, 0, 0)
			w(" %s | %s |\n", xratio(run.find("xoneway", sysMarsmesh, p, 0, 0, 0), n, fRate),
				xratio(run.find("xoneway", sysMarsmeshUSend, p, 0, 0, 0), n, fRate))
		}
		w("\n")
		failures(b, ow)
	}
	xStreamTable(b, run)
	xFanoutTable(b, run)
	xPubsubTable(b, run) // xpubsub.go
	lossyTable(b, run)
	xPubsubLossyTable(b, run) // xpubsub_lossy.go
}

func xFanoutTable(b *strings.Builder, run Run) {
	rs := recs(run, "xfanout")
	if len(rs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	var limits []int
	for _, l := range distinct(rs, func(r Record) int { return r.Limit }) {
		if l != 0 { // 0: NATS
			limits = append(limits, l)
		}
	}
	payload := rs[0].Payload
	w("## Fan-out across processes (time from the send call until every receiver has the message, µs: p50 / p99)\n\n")
	w("Payload %s. The sender is in the bench process; the receivers (marsmesh nodes, or NATS subscriber connections)\n", sizeName(payload))
	w("are spread over child processes (processes counted in the last column, MARS or nats-server included). A child\n")
	w("reports on its stdout when all its receivers have a round's message; the round's time is the latest report's\n")
	w("clock reading minus the send time. Per delivered message: context switches / packets / CPU µs over those\n")
	w("processes (the reports add one line per child per round).\n\n")
	head := []string{"receivers"}
	for _, l := range limits {
		head = append(head, "SendMany "+fanLimitName(l))
	}
	head = append(head, "NATS publish", "best SendMany / NATS (p99)", "processes")
	fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" ---: |", len(head)))
	for _, n := range distinct(rs, func(r Record) int { return r.Nodes }) {
		w("| %d |", n)
		nats := findFan(run, sysNATS, n, 0)
		best, procs := math.Inf(1), 0
		for _, l := range limits {
			r := findFan(run, sysMarsmesh, n, l)
			if !r.ok() || r.Lat == nil {
				w(" %s |", cellErr(r))
				continue
			}
			procs = r.Procs
			w(" %s / %s; %s |", fmtUs(r.Lat.P50), fmtUs(r.Lat.P99), costCell(r))
			if v := Median(roundRatios(r, nats, fP99)); v < best {
				best = v
			}
		}
		if !nats.ok() || nats.Lat == nil {
			w(" %s | – | %d |\n", cellErr(nats), procs)
			continue
		}
		w(" %s / %s; %s | %s | %d |\n", fmtUs(nats.Lat.P50), fmtUs(nats.Lat.P99), costCell(nats), fmtRatio(best), procs)
	}
	w("\n")
	failures(b, rs)
}

func findFan(run Run, system string, nodes, limit int) *Record {
	for i := range run.Records {
		x := &run.Records[i]
		if x.Suite == "xfanout" && x.System == system && x.Nodes == nodes && x.Limit == limit {
			return x
		}
	}
	return nil
}

func costCell(r *Record) string {
	if !r.ok() {
		return cellErr(r)
	}
	pk := fmtNum(r.DgramsPer)
	if r.System == sysGRPC || r.System == sysNATS {
		pk = fmtNum(r.SegsPer) + " T"
	}
	return fmt.Sprintf("%s / %s / %s", fmtNum(r.CtxPer), pk, fmtNum(r.CPUPerM))
}

func lossyTable(b *strings.Builder, run Run) {
	rs := recs(run, "lossy")
	if len(rs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	cols := columns(rs)
	w("## Request/response over a lossy link (c=1, µs: p50 / p99 / p99.9, requests)\n\n")
	w("Client and server ends in two network namespaces the bench creates, joined by a link that delays every packet by\n")
	w("1 ms and drops the given share of packets, each direction (%s). Figures are over all rounds' requests; ratios\n", lossyMethod(rs))
	w("are medians of the rounds' ratios.\n\n")
	header(b, []string{"loss", "payload"}, cols, "marsmesh / gRPC (p99)", "marsmesh / NATS (p99)")
	var losses []float64
	seen := map[float64]bool{}
	for _, r := range rs {
		if !seen[r.Loss] {
			seen[r.Loss] = true
			losses = append(losses, r.Loss)
		}
	}
	for _, loss := range losses {
		for _, p := range distinct(rs, func(r Record) int { return r.Payload }) {
			w("| %s%% | %s |", fmtNum(loss), sizeName(p))
			for _, c := range cols {
				r := run.findLoss(c.key, p, loss)
				cell := latCell(r)
				if r.ok() && r.Lat != nil {
					cell += fmt.Sprintf(" (%s", thousands(int64(r.Lat.N)))
					if r.Errors > 0 {
						cell += fmt.Sprintf(", %s failed", thousands(r.Errors))
					}
					cell += ")"
				}
				w(" %s |", cell)
			}
			m := run.findLoss(sysMarsmesh, p, loss)
			w(" %s | %s |\n", xratio(m, run.findLoss(sysGRPC, p, loss), fP99), xratio(m, run.findLoss(sysNATS, p, loss), fP99))
		}
	}
	w("\n")
	failures(b, rs)
	lossyStreamTable(b, run)
}

// lossyStreamTable renders the lossy suite's stream case.
func lossyStreamTable(b *strings.Builder, run Run) {
	rs := recs(run, "lossy-stream")
	if len(rs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	cols := columns(rs)
	w("### Streams over the lossy link (%s messages, %s per round: msgs/s and MB/s until the receiver has them all)\n\n",
		sizeName(lossyStreamPayload), fmtBytes(lossyStreamPayload*lossyStreamCount))
	header(b, []string{"loss"}, cols, "marsmesh / gRPC")
	for _, loss := range distinctLoss(rs) {
		w("| %s%% |", fmtNum(loss))
		var mine, peer *Record
		for _, c := range cols {
			var r *Record
			for i := range run.Records {
				x := &run.Records[i]
				if x.Suite == "lossy-stream" && x.System == c.key && x.Loss == loss {
					r = x
				}
			}
			switch c.key {
			case sysMarsmesh:
				mine = r
			case sysGRPC:
				peer = r
			}
			if !r.ok() {
				w(" %s |", cellErr(r))
				continue
			}
			w(" %s/s, %s MB/s |", fmtRate(r.Rate), fmtNum(r.MBps))
		}
		w(" %s |\n", xratio(mine, peer, fRate))
	}
	w("\n")
	failures(b, rs)
}

// distinctLoss lists the loss rates of rs in order of first appearance.
func distinctLoss(rs []Record) []float64 {
	var out []float64
	seen := map[float64]bool{}
	for _, r := range rs {
		if !seen[r.Loss] {
			seen[r.Loss] = true
			out = append(out, r.Loss)
		}
	}
	return out
}

// xgoal is one goal of issue 12 on cross-process figures.
type xgoal struct {
	what, where string
	mine, peer  *Record
	f           func(RoundFig) float64
	p99         bool // f is the p99 (else p50, or a rate when unit is "/s")
	unit        string
	target      float64
	atMost      bool
	strict      bool
}

func xGoals(run Run) []xgoal {
	var gs []xgoal
	x := func(sys string, p, c int) *Record { return run.find("xrpc", sys, p, c, 0, 0) }
	add := func(g xgoal) {
		if g.mine.ok() && g.peer.ok() {
			gs = append(gs, g)
		}
	}
	add(xgoal{"SendRPC p50 vs raw UDP", "64 B, c=1", x(sysMarsmesh, 64, 1), x(sysUDP, 64, 1), fP50, false, "µs", 1.5, true, false})
	add(xgoal{"SendRPC p50 vs gRPC", "64 B, c=1", x(sysMarsmesh, 64, 1), x(sysGRPC, 64, 1), fP50, false, "µs", 0.5, true, false})
	add(xgoal{"SendRPC p50 vs NATS", "64 B, c=1", x(sysMarsmesh, 64, 1), x(sysNATS, 64, 1), fP50, false, "µs", 0.5, true, false})
	add(xgoal{"SendRPC p99 vs raw UDP", "64 B, c=1", x(sysMarsmesh, 64, 1), x(sysUDP, 64, 1), fP99, true, "µs", 2, true, false})
	add(xgoal{"SendRPC req/s vs NATS", "64 B, c=64", x(sysMarsmesh, 64, 64), x(sysNATS, 64, 64), fRate, false, "/s", 2, false, false})
	add(xgoal{"SendRPC req/s vs NATS", "1 KiB, c=64", x(sysMarsmesh, 1024, 64), x(sysNATS, 1024, 64), fRate, false, "/s", 1.5, false, false})
	add(xgoal{"SendRPC p50 vs gRPC", "64 KiB, c=1", x(sysMarsmesh, 65536, 1), x(sysGRPC, 65536, 1), fP50, false, "µs", 1, true, false})
	add(xgoal{"SendRPC req/s vs gRPC", "64 KiB, c=64", x(sysMarsmesh, 65536, 64), x(sysGRPC, 65536, 64), fRate, false, "/s", 1, false, false})
	for _, l := range []struct{ loss, target float64 }{{1, 0.5}, {5, 0.3}} {
		for _, peer := range []string{sysGRPC, sysNATS} {
			add(xgoal{"SendRPC p99 vs " + shortName[peer], fmt.Sprintf("1 ms delay, %s%% loss, 64 B", fmtNum(l.loss)),
				run.findLoss(sysMarsmesh, 64, l.loss), run.findLoss(peer, 64, l.loss), fP99, true, "µs", l.target, true, false})
		}
	}
	if fr := recs(run, "xfanout"); len(fr) > 0 {
		maxN := 0
		for _, n := range distinct(fr, func(r Record) int { return r.Nodes }) {
			maxN = max(maxN, n)
		}
		var nats, best *Record
		bestRatio := math.Inf(1)
		for i := range run.Records {
			r := &run.Records[i]
			if r.Suite == "xfanout" && r.Nodes == maxN && r.System == sysNATS {
				nats = r
			}
		}
		for i := range run.Records {
			r := &run.Records[i]
			if r.Suite == "xfanout" && r.Nodes == maxN && r.System == sysMarsmesh {
				if v := Median(roundRatios(r, nats, fP99)); v < bestRatio {
					best, bestRatio = r, v
				}
			}
		}
		if best != nil {
			add(xgoal{fmt.Sprintf("SendMany to %d nodes p99 vs NATS fan-out", maxN), fmt.Sprintf("best limit (%s)", strings.TrimPrefix(fanLimitName(best.Limit), "limit ")),
				best, nats, fP99, true, "µs", 1, true, false})
		}
	}
	for _, p := range []int{64, 1024} {
		add(xgoal{"Send msgs/s vs NATS publish", sizeName(p), run.find("xoneway", sysMarsmesh, p, 0, 0, 0),
			run.find("xoneway", sysNATS, p, 0, 0, 0), fRate, false, "/s", 1, false, false})
		add(xgoal{"USend msgs/s vs Send", sizeName(p), run.find("xoneway", sysMarsmeshUSend, p, 0, 0, 0),
			run.find("xoneway", sysMarsmesh, p, 0, 0, 0), fRate, false, "/s", 1, false, false})
	}
	for _, g := range []struct {
		p      int
		target float64
	}{{64, 1.5}, {1024, 1.5}, {64 << 10, 1}} {
		add(xgoal{"stream msgs/s vs gRPC bidi", sizeName(g.p), run.find("xstream", sysMarsmesh, g.p, 0, 0, 0),
			run.find("xstream", sysGRPC, g.p, 0, 0, 0), fRate, false, "/s", g.target, false, false})
	}
	return gs
}

func xGoalTable(b *strings.Builder, run Run) {
	gs := xGoals(run)
	if len(gs) == 0 {
		return
	}
	fmt.Fprintf(b, "## Goals (issue 12, across processes)\n\n")
	fmt.Fprintf(b, "Ratio: the median of the per-round ratios (systems measured in the same round; in a merged report, the rounds of\n")
	fmt.Fprintf(b, "every run); per round: each round's ratio.\n\n")
	fmt.Fprintf(b, "| goal | case | marsmesh | peer | ratio | per round | target | result |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, g := range gs {
		rs := roundRatios(g.mine, g.peer, g.f)
		gl := goal{target: g.target, atMost: g.atMost, strict: g.strict, mine: Median(rs), peer: 1}
		var per []string
		met := 0
		for _, r := range rs {
			per = append(per, strings.TrimSuffix(fmtRatio(r), "x"))
			h := gl
			h.mine = r
			if h.met() {
				met++
			}
		}
		fig := func(r *Record) string {
			switch {
			case g.unit == "/s":
				return fmtRate(r.Rate) + " /s"
			case r.Lat == nil:
				return "–"
			case g.p99:
				return fmtUs(r.Lat.P99) + " µs"
			}
			return fmtUs(r.Lat.P50) + " µs"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s (%d of %d met) | %s | %s |\n", g.what, g.where, fig(g.mine), fig(g.peer),
			fmtRatio(gl.mine), strings.Join(per, ", "), met, len(rs), gl.targetText(), gl.verdict())
	}
	b.WriteString("\n")
}

// lossyMethod names how the lossy link was made.
func lossyMethod(rs []Record) string {
	for _, r := range rs {
		if r.Impair != "" {
			return r.Impair
		}
	}
	return "tc netem"
}

// fanLimitName names a fan-out limit: "limit 8", or "flat" (fanFlat).
func fanLimitName(l int) string {
	if l < 0 {
		return "flat"
	}
	return fmt.Sprintf("limit %d", l)
}
