package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Panel is one grouped bar chart: for each group (an x category) one bar
// per series. Values[s][g] is series s in group g; NaN or <= 0 is not
// measured (drawn as "n/a").
type Panel struct {
	Title  string
	Note   string // under the title, e.g. "lower is better"
	Log    bool   // logarithmic y axis
	Groups []string
	Series []string
	Values [][]float64
}

const (
	panelW, panelH                   = 600, 330
	padL, padR, padT, padB           = 64, 16, 62, 44
	plotW, plotH                     = panelW - padL - padR, panelH - padT - padB
	svgFont                          = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
	markColor                        = "#c0392b"
	gridColor, axisColor, textColour = "#dddddd", "#555555", "#222222"
)

// Series are coloured by whose they are: marsmesh's (named "marsmesh ..."
// or "SendMany ...") in warm colours, the peers' in cool ones, each in
// order of appearance.
var (
	warmColours = []string{markColor, "#e67e22", "#f1c40f", "#8e44ad"}
	coolColours = []string{"#9ecae1", "#74c476", "#bcbddc"}
)

func isMine(series string) bool {
	return strings.HasPrefix(series, "marsmesh") || strings.HasPrefix(series, "SendMany")
}

// peerColours keeps a peer's colour the same in every panel.
var peerColours = []struct{ prefix, colour string }{
	{"gRPC", "#2c7fb8"}, {"NATS", "#41ab5d"}, {"kcp-go", "#7f7f7f"}, {"raw UDP", "#17becf"},
}

// seriesColours assigns each series its colour.
func seriesColours(series []string) []string {
	out := make([]string, len(series))
	w, c := 0, 0
	for i, s := range series {
		if isMine(s) {
			out[i] = warmColours[w%len(warmColours)]
			w++
			continue
		}
		for _, p := range peerColours {
			if strings.HasPrefix(s, p.prefix) {
				out[i] = p.colour
			}
		}
		if out[i] == "" {
			out[i] = coolColours[c%len(coolColours)]
			c++
		}
	}
	return out
}

// axis is the y range of a panel and its ticks.
type axis struct {
	log      bool
	lo, hi   float64 // in data units (log: powers of ten)
	ticks    []float64
	tickText []string
}

func newAxis(values [][]float64, log bool) axis {
	lo, hi := math.Inf(1), 0.0
	for _, s := range values {
		for _, v := range s {
			if v > 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	a := axis{log: log}
	if log {
		a.lo = math.Pow(10, math.Floor(math.Log10(lo)))
		a.hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if a.hi <= a.lo {
			a.hi = a.lo * 10
		}
		for t := a.lo; t <= a.hi*1.0001; t *= 10 {
			a.ticks = append(a.ticks, t)
			a.tickText = append(a.tickText, shortNum(t))
		}
		return a
	}
	step := niceStep(hi / 5)
	a.lo, a.hi = 0, math.Ceil(hi/step)*step
	for t := 0.0; t <= a.hi*1.0001; t += step {
		a.ticks = append(a.ticks, t)
		a.tickText = append(a.tickText, shortNum(t))
	}
	return a
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// frac maps a value to 0 (bottom) .. 1 (top) of the plot.
func (a axis) frac(v float64) float64 {
	var f float64
	if a.log {
		if v <= 0 {
			return 0
		}
		f = (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	} else {
		f = (v - a.lo) / (a.hi - a.lo)
	}
	return math.Max(0, math.Min(1, f))
}

// shortNum is a compact label: 950, 12k, 1.5M.
func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f", v)
	}
	return trimZero(fmt.Sprintf("%.1f", v))
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }

func esc(s string) string { return html.EscapeString(s) }

// renderPanel draws p with its top-left corner at (x, y).
func renderPanel(b *strings.Builder, p Panel, x, y int) {
	a := newAxis(p.Values, p.Log)
	colours := seriesColours(p.Series)
	fmt.Fprintf(b, "<g transform=\"translate(%d,%d)\">\n", x, y)
	fmt.Fprintf(b, "<rect x=\"0.5\" y=\"0.5\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"#cccccc\"/>\n", panelW-1, panelH-1)
	fmt.Fprintf(b, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\" fill=\"%s\">%s</text>\n", padL-50, textColour, esc(p.Title))
	if p.Note != "" {
		fmt.Fprintf(b, "<text x=\"%d\" y=\"36\" font-size=\"11\" fill=\"%s\">%s</text>\n", padL-50, axisColor, esc(p.Note))
	}
	// legend
	lx := padL - 50
	for i, s := range p.Series {
		w := 16 + 6*len(s)
		if lx+w > panelW-padR {
			break
		}
		fmt.Fprintf(b, "<rect x=\"%d\" y=\"44\" width=\"10\" height=\"10\" fill=\"%s\"/>", lx, colours[i])
		fmt.Fprintf(b, "<text x=\"%d\" y=\"53\" font-size=\"10\" fill=\"%s\">%s</text>\n", lx+13, textColour, esc(s))
		lx += w + 8
	}
	// grid and y ticks
	for i, t := range a.ticks {
		ty := float64(padT) + float64(plotH)*(1-a.frac(t))
		fmt.Fprintf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\"/>", padL, ty, padL+plotW, ty, gridColor)
		fmt.Fprintf(b, "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\" fill=\"%s\">%s</text>\n", padL-4, ty+3, axisColor, a.tickText[i])
	}
	fmt.Fprintf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\"/>\n", padL, padT+plotH, padL+plotW, padT+plotH, axisColor)
	// bars
	groupW := float64(plotW) / float64(max(len(p.Groups), 1))
	barW := groupW * 0.84 / float64(max(len(p.Series), 1))
	for g, name := range p.Groups {
		gx := float64(padL) + groupW*float64(g) + groupW*0.08
		for s := range p.Series {
			v := math.NaN()
			if s < len(p.Values) && g < len(p.Values[s]) {
				v = p.Values[s][g]
			}
			bx := gx + barW*float64(s)
			if math.IsNaN(v) || v <= 0 {
				fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"8\" text-anchor=\"middle\" fill=\"%s\">n/a</text>\n", bx+barW/2, padT+plotH-3, axisColor)
				continue
			}
			h := float64(plotH) * a.frac(v)
			by := float64(padT+plotH) - h
			fmt.Fprintf(b, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%s, %s: %s</title></rect>\n",
				bx, by, math.Max(barW-1, 1), h, colours[s], esc(p.Series[s]), esc(name), esc(shortNum(v)))
			if barW >= 14 {
				fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"8\" text-anchor=\"middle\" fill=\"%s\">%s</text>\n", bx+barW/2, by-2, textColour, esc(shortNum(v)))
			}
		}
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" fill=\"%s\">%s</text>\n",
			float64(padL)+groupW*(float64(g)+0.5), padT+plotH+16, textColour, esc(name))
	}
	b.WriteString("</g>\n")
}

// RenderSVG lays panels out in a grid of cols columns under a title.
func RenderSVG(title, subtitle string, panels []Panel, cols int) string {
	cols = max(cols, 1)
	rows := (len(panels) + cols - 1) / cols
	const head = 48
	w, h := cols*panelW+(cols+1)*10, head+rows*(panelH+10)+10
	var b strings.Builder
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" %s>\n", w, h, w, h, svgFont)
	fmt.Fprintf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"#f7f7f7\"/>\n", w, h)
	fmt.Fprintf(&b, "<text x=\"10\" y=\"22\" font-size=\"17\" font-weight=\"bold\" fill=\"%s\">%s</text>\n", textColour, esc(title))
	fmt.Fprintf(&b, "<text x=\"10\" y=\"40\" font-size=\"11\" fill=\"%s\">%s</text>\n", axisColor, esc(subtitle))
	for i, p := range panels {
		renderPanel(&b, p, 10+(i%cols)*(panelW+10), head+(i/cols)*(panelH+10))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// Charts draws the latency, throughput, one-way and fan-out comparisons
// of a run.
func Charts(run Run) string {
	var panels []Panel
	// The cross-process figures when the run has them, else the one-process ones.
	rpcSuite, owSuite := "rpc", "oneway"
	if len(recs(run, "xrpc")) > 0 {
		rpcSuite = "xrpc"
	}
	if len(recs(run, "xoneway")) > 0 {
		owSuite = "xoneway"
	}
	rpc := recs(run, rpcSuite)
	cols := columns(rpc)
	payloads := distinct(rpc, func(r Record) int { return r.Payload })
	concs := distinct(rpc, func(r Record) int { return r.Conc })
	series := func(cs []sysCol) []string {
		var s []string
		for _, c := range cs {
			s = append(s, c.name)
		}
		return s
	}
	if len(rpc) > 0 {
		for _, q := range []struct {
			name string
			f    func(Latency) float64
		}{{"p50", func(l Latency) float64 { return l.P50 }}, {"p99", func(l Latency) float64 { return l.P99 }}} {
			p := Panel{Title: "Request/response latency " + q.name + ", concurrency 1 (µs)", Note: "lower is better; log scale",
				Log: true, Series: series(cols)}
			for _, pl := range payloads {
				p.Groups = append(p.Groups, sizeName(pl))
			}
			for _, c := range cols {
				var vs []float64
				for _, pl := range payloads {
					v := nan
					if r := run.find(rpcSuite, c.key, pl, 1, 0, 0); r != nil && r.Err == "" && r.Lat != nil {
						v = q.f(*r.Lat)
					}
					vs = append(vs, v)
				}
				p.Values = append(p.Values, vs)
			}
			panels = append(panels, p)
		}
		for _, pl := range payloads {
			p := Panel{Title: "Request/response throughput, " + sizeName(pl) + " (requests/s)", Note: "higher is better; log scale; groups: concurrent callers",
				Log: true, Series: series(cols)}
			for _, c := range concs {
				p.Groups = append(p.Groups, fmt.Sprintf("c=%d", c))
			}
			for _, c := range cols {
				var vs []float64
				for _, cc := range concs {
					v := nan
					if r := run.find(rpcSuite, c.key, pl, cc, 0, 0); r != nil && r.Err == "" {
						v = r.Rate
					}
					vs = append(vs, v)
				}
				p.Values = append(p.Values, vs)
			}
			panels = append(panels, p)
		}
	}
	if ow := recs(run, owSuite); len(ow) > 0 {
		oc := columns(ow)
		p := Panel{Title: "One-way messages delivered per second", Note: "higher is better; log scale", Log: true, Series: series(oc)}
		ps := distinct(ow, func(r Record) int { return r.Payload })
		for _, pl := range ps {
			p.Groups = append(p.Groups, sizeName(pl))
		}
		for _, c := range oc {
			var vs []float64
			for _, pl := range ps {
				v := nan
				if r := run.find(owSuite, c.key, pl, 0, 0, 0); r != nil && r.Err == "" {
					v = r.Rate
				}
				vs = append(vs, v)
			}
			p.Values = append(p.Values, vs)
		}
		panels = append(panels, p)
	}
	if fr := recs(run, "fanout"); len(fr) > 0 {
		nodes := distinct(fr, func(r Record) int { return r.Nodes })
		limits := distinct(fr, func(r Record) int { return r.Limit })
		p := Panel{Title: "Fan-out: until every receiver has it, p99 (µs)", Note: "lower is better; groups: receivers"}
		for _, n := range nodes {
			p.Groups = append(p.Groups, fmt.Sprintf("%d nodes", n))
		}
		for _, l := range limits {
			sys, name := sysMarsmesh, fmt.Sprintf("SendMany limit %d", l)
			if l == 0 {
				sys, name = sysNATS, "NATS publish"
			}
			p.Series = append(p.Series, name)
			var vs []float64
			for _, n := range nodes {
				v := nan
				if r := run.find("fanout", sys, fr[0].Payload, 0, n, l); r != nil && r.Err == "" && r.Lat != nil {
					v = r.Lat.P99
				}
				vs = append(vs, v)
			}
			p.Values = append(p.Values, vs)
		}
		panels = append(panels, p)
	}
	sub := fmt.Sprintf("%s, %d cores; %s; %s", run.Env.CPU, run.Env.Cores, run.Env.Go, run.Env.Date)
	if len(run.Sources) > 1 {
		sub += fmt.Sprintf("; median of %d runs", len(run.Sources))
	}
	return RenderSVG("marsmesh beside gRPC, NATS, kcp-go and raw UDP (loopback, one process)", sub, panels, 2)
}
