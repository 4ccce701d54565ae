package main

import (
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

// wellFormed parses s as XML and counts its elements by name.
func wellFormed(t *testing.T, s string) map[string]int {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
	return count
}

func TestRenderSVGBarsAndEscaping(t *testing.T) {
	p := Panel{Title: "A <b> & c", Groups: []string{"g1", "g2"}, Series: []string{"s1", "s2", "s3"},
		Values: [][]float64{{1, 2}, {3, math.NaN()}, {0, 5}}}
	s := RenderSVG("title & more", "sub", []Panel{p, p}, 2)
	count := wellFormed(t, s)
	if count["svg"] != 1 {
		t.Fatalf("want one svg root")
	}
	if got := strings.Count(s, `class="bar"`); got != 2*4 { // 4 measured values per panel
		t.Errorf("%d bars, want 8", got)
	}
	if got := strings.Count(s, ">n/a<"); got != 2*2 {
		t.Errorf("%d n/a marks, want 4", got)
	}
	if !strings.Contains(s, "A &lt;b&gt; &amp; c") {
		t.Error("title not escaped")
	}
}

func TestSeriesColours(t *testing.T) {
	c := seriesColours([]string{"marsmesh Send", "gRPC unary", "marsmesh USend", "NATS publish", "SendMany limit 2", "other"})
	if c[0] != markColor || c[1] != "#2c7fb8" || c[2] != warmColours[1] || c[3] != "#41ab5d" || c[4] != warmColours[2] || c[5] != coolColours[0] {
		t.Fatalf("colours %v", c)
	}
}

func TestAxis(t *testing.T) {
	a := newAxis([][]float64{{15, 900}, {math.NaN(), 0}}, true)
	if a.lo != 10 || a.hi != 1000 || len(a.ticks) != 3 {
		t.Fatalf("log axis %+v", a)
	}
	if f := a.frac(100); math.Abs(f-0.5) > 1e-9 {
		t.Errorf("log frac(100) = %v", f)
	}
	if a.frac(10) != 0 || a.frac(1000) != 1 || a.frac(1e6) != 1 || a.frac(0) != 0 {
		t.Error("log frac bounds")
	}
	l := newAxis([][]float64{{3.2, 47}}, false)
	if l.lo != 0 || l.hi != 50 || l.ticks[1] != 10 {
		t.Fatalf("linear axis %+v", l)
	}
	if f := l.frac(25); f != 0.5 {
		t.Errorf("linear frac(25) = %v", f)
	}
	if e := newAxis(nil, true); e.lo != 1 || e.hi != 10 {
		t.Errorf("empty axis %+v", e)
	}
	for x, want := range map[float64]float64{0.7: 1, 3: 5, 12: 20, 51: 100, 200: 200} {
		if got := niceStep(x); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", x, got, want)
		}
	}
	for v, want := range map[float64]string{950: "950", 1000: "1k", 12500: "12.5k", 2e6: "2M", 0.5: "0.5", 0: "0"} {
		if got := shortNum(v); got != want {
			t.Errorf("shortNum(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestChartsFromRun(t *testing.T) {
	s := Charts(sampleRun())
	wellFormed(t, s)
	for _, want := range []string{"latency p50", "latency p99", "throughput, 64 B", "One-way", "Fan-out", "SendMany limit 2", "NATS publish"} {
		if !strings.Contains(s, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	// rpc: p50 and p99 panels have 4 systems x 2 payloads minus raw UDP at 64 KiB
	if got := strings.Count(s, `class="bar"`); got < 7*2 {
		t.Errorf("only %d bars", got)
	}
}
