package main

import (
	"fmt"
	"math"
	"strings"
)

// The one-process goals (issue 7) and their table.

// goal is one target of issue 7, evaluated on a run.
type goal struct {
	what, where    string
	mine, peer     float64
	unit           string
	target         float64
	atMost, strict bool // ratio <= target (else >= target); strict: < or >
}

func (g goal) ratio() float64 { return g.mine / g.peer }

func (g goal) key() string { return g.what + "|" + g.where }

func (g goal) met() bool {
	r := g.ratio()
	switch {
	case g.atMost && g.strict:
		return r < g.target
	case g.atMost:
		return r <= g.target
	case g.strict:
		return r > g.target
	}
	return r >= g.target
}

func (g goal) verdict() string {
	r := g.ratio()
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "not measured"
	}
	if g.met() {
		return "**met**"
	}
	if g.atMost {
		return fmt.Sprintf("**missed** by %.0f%% (%.2fx over)", (r/g.target-1)*100, r/g.target)
	}
	return fmt.Sprintf("**missed** by %.0f%% (needs %.2fx more)", (1-r/g.target)*100, g.target/r)
}

func (g goal) targetText() string {
	op := map[[2]bool]string{{true, false}: "≤", {true, true}: "<", {false, false}: "≥", {false, true}: ">"}[[2]bool{g.atMost, g.strict}]
	return op + " " + fmtRatio(g.target)
}

// Goals evaluates the targets of issue 7 on a run.
func Goals(run Run) []goal {
	var gs []goal
	rpc := func(sys string, p, c int) *Record {
		r := run.find("rpc", sys, p, c, 0, 0)
		if r == nil || r.Err != "" {
			return nil
		}
		return r
	}
	payloads := distinct(recs(run, "rpc"), func(r Record) int { return r.Payload })
	for _, p := range payloads {
		m := rpc(sysMarsmesh, p, 1)
		if m == nil || m.Lat == nil {
			continue
		}
		if u := rpc(sysUDP, p, 1); u != nil && u.Lat != nil {
			gs = append(gs, goal{what: "SendRPC p50 vs raw UDP ping-pong", where: sizeName(p) + ", c=1",
				mine: m.Lat.P50, peer: u.Lat.P50, unit: "µs", target: 2, atMost: true})
		}
		if g := rpc(sysGRPC, p, 1); g != nil && g.Lat != nil {
			gs = append(gs, goal{what: "SendRPC p50 vs gRPC unary", where: sizeName(p) + ", c=1",
				mine: m.Lat.P50, peer: g.Lat.P50, unit: "µs", target: 0.8, atMost: true})
		}
	}
	for _, p := range payloads {
		m := rpc(sysMarsmesh, p, 64)
		if m == nil {
			continue
		}
		if n := rpc(sysNATS, p, 64); n != nil {
			gs = append(gs, goal{what: "SendRPC req/s vs NATS request/reply", where: sizeName(p) + ", c=64",
				mine: m.Rate, peer: n.Rate, unit: "/s", target: 2})
		}
		if g := rpc(sysGRPC, p, 64); g != nil {
			gs = append(gs, goal{what: "SendRPC req/s vs gRPC unary", where: sizeName(p) + ", c=64",
				mine: m.Rate, peer: g.Rate, unit: "/s", target: 4})
		}
	}
	for _, p := range distinct(recs(run, "oneway"), func(r Record) int { return r.Payload }) {
		m, n := run.find("oneway", sysMarsmesh, p, 0, 0, 0), run.find("oneway", sysNATS, p, 0, 0, 0)
		if m != nil && n != nil && m.Err == "" && n.Err == "" {
			gs = append(gs, goal{what: "Send msgs/s vs NATS publish", where: sizeName(p),
				mine: m.Rate, peer: n.Rate, unit: "/s", target: 1, strict: true})
		}
	}
	fr := recs(run, "fanout")
	if len(fr) > 0 {
		nodes := distinct(fr, func(r Record) int { return r.Nodes })
		maxN := 0
		for _, n := range nodes {
			maxN = max(maxN, n)
		}
		nats := run.find("fanout", sysNATS, fr[0].Payload, 0, maxN, 0)
		for _, r := range fr {
			if r.System != sysMarsmesh || r.Nodes != maxN || r.Err != "" || r.Lat == nil || nats == nil || nats.Err != "" || nats.Lat == nil {
				continue
			}
			gs = append(gs, goal{what: fmt.Sprintf("SendMany to %d nodes p99 vs NATS fan-out", maxN),
				where: fmt.Sprintf("limit %d", r.Limit), mine: r.Lat.P99, peer: nats.Lat.P99, unit: "µs", target: 1, atMost: true, strict: true})
		}
	}
	return gs
}

func goals(b *strings.Builder, run Run) {
	gs := Goals(run)
	if len(gs) == 0 {
		return
	}
	fmt.Fprintf(b, "## Goals (issue 7)\n\n")
	ranges := len(run.GoalRatios) > 0
	if ranges {
		fmt.Fprintf(b, "Figures are medians over the runs; the ratio is of the medians, and the next column gives the ratio\n")
		fmt.Fprintf(b, "in each run, with how many runs met the target.\n\n")
		fmt.Fprintf(b, "| goal | case | marsmesh | peer | ratio | per run | target | result |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	} else {
		fmt.Fprintf(b, "| goal | case | marsmesh | peer | ratio | target | result |\n| --- | --- | ---: | ---: | ---: | ---: | --- |\n")
	}
	for _, g := range gs {
		f := fmtUs
		if g.unit == "/s" {
			f = fmtRate
		}
		per := ""
		if ranges {
			var rs []string
			met := 0
			for _, r := range run.GoalRatios[g.key()] {
				rs = append(rs, strings.TrimSuffix(fmtRatio(r), "x"))
				h := g
				h.mine, h.peer = r, 1
				if h.met() {
					met++
				}
			}
			per = fmt.Sprintf(" %s (%d of %d met) |", strings.Join(rs, ", "), met, len(rs))
		}
		fmt.Fprintf(b, "| %s | %s | %s %s | %s %s | %s |%s %s | %s |\n", g.what, g.where, f(g.mine), g.unit, f(g.peer), g.unit,
			fmtRatio(g.ratio()), per, g.targetText(), g.verdict())
	}
	b.WriteString("\n")
	var ref []string
	for _, p := range distinct(recs(run, "rpc"), func(r Record) int { return r.Payload }) {
		m := run.find("rpc", sysMarsmesh, p, 64, 0, 0)
		if m == nil || m.Err != "" || m.CPUPerM <= 0 {
			continue
		}
		var parts []string
		for _, peer := range []string{sysNATS, sysGRPC} {
			if r := run.find("rpc", peer, p, 64, 0, 0); r != nil && r.Err == "" && r.CPUPerM > 0 {
				parts = append(parts, fmt.Sprintf("%s vs %s", fmtRatio(r.CPUPerM/m.CPUPerM), shortName[peer]))
			}
		}
		if len(parts) > 0 {
			ref = append(ref, fmt.Sprintf("%s: %s", sizeName(p), strings.Join(parts, ", ")))
		}
	}
	if len(ref) > 0 {
		fmt.Fprintf(b, "For reference, not the goal: requests per CPU-second at c=64 (throughput if each system had the\n")
		fmt.Fprintf(b, "cores to itself), marsmesh over the peer: %s.\n\n", strings.Join(ref, "; "))
	}
}
