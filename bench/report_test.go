package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFormatting(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{fmtUs(3.14), "3.1"}, {fmtUs(35.4), "35"}, {fmtUs(12345.6), "12,346"}, {fmtUs(math.NaN()), "–"},
		{fmtRate(950), "950"}, {fmtRate(12345), "12.3k"}, {fmtRate(1234567), "1.23M"}, {fmtRate(0), "–"},
		{fmtRatio(0.8449), "0.84x"}, {fmtRatio(123.4), "123x"}, {fmtRatio(math.Inf(1)), "–"},
		{thousands(1234567), "1,234,567"}, {thousands(-1000), "-1,000"}, {thousands(999), "999"},
		{fmtBytes(51200), "50.0 KiB"}, {fmtBytes(100), "100 B"},
		{sizeName(64), "64 B"}, {sizeName(1024), "1 KiB"}, {sizeName(64 << 10), "64 KiB"}, {fileSize(1024), "1KiB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestBestAndRatio(t *testing.T) {
	peers := map[string]float64{"gRPC": 40, "NATS": 50, "raw UDP": 16, "broken": math.NaN(), "zero": 0}
	if n, v := best(peers, true); n != "raw UDP" || v != 16 {
		t.Errorf("lowest: %s %v", n, v)
	}
	if n, v := best(peers, false); n != "NATS" || v != 50 {
		t.Errorf("highest: %s %v", n, v)
	}
	if got := ratioCell(32, peers, true); got != "2.00x (raw UDP)" {
		t.Errorf("ratio cell: %q", got)
	}
	if got := ratioCell(100, peers, false); got != "2.00x (NATS)" {
		t.Errorf("ratio cell: %q", got)
	}
	if got := ratioCell(math.NaN(), peers, true); got != "–" {
		t.Errorf("no own figure: %q", got)
	}
	if got := ratioCell(1, map[string]float64{}, true); got != "–" {
		t.Errorf("no peers: %q", got)
	}
}

// sampleRun is a small run with every suite.
func sampleRun() Run {
	lat := func(p50, p99 float64) *Latency {
		return &Latency{N: 100, P50: p50, P99: p99, P999: p99 * 2, Max: p99 * 3}
	}
	r := Run{Env: Env{CPU: "Test CPU", Cores: 2, GOMAXPROCS: 2, Go: "go1.26", Date: "2026-01-01 00:00 UTC"},
		Command: "cd bench && go run . -quick", Duration: "1s", Elapsed: 12}
	add := func(x Record) { r.Records = append(r.Records, x) }
	for _, s := range []struct {
		key, name string
		p50, rate float64
	}{{sysMarsmesh, "marsmesh SendRPC", 30, 100000}, {sysGRPC, "gRPC unary", 50, 20000}, {sysNATS, "NATS request", 60, 40000}, {sysUDP, "raw UDP", 16, 90000}} {
		for _, c := range []int{1, 64} {
			add(Record{Suite: "rpc", System: s.key, Name: s.name, Payload: 64, Conc: c, Lat: lat(s.p50*float64(c), s.p50*float64(c)*3), Rate: s.rate / float64(65-c), Count: 1000, Seconds: 1})
		}
		if s.key == sysUDP {
			add(Record{Suite: "rpc", System: s.key, Name: s.name, Payload: 64 << 10, Conc: 1, Err: "n/a: too big"})
		} else {
			add(Record{Suite: "rpc", System: s.key, Name: s.name, Payload: 64 << 10, Conc: 1, Lat: lat(s.p50*10, s.p50*30), Rate: 1000, Count: 1000, Seconds: 1})
		}
	}
	add(Record{Suite: "oneway", System: sysMarsmesh, Name: "marsmesh Send", Payload: 64, Rate: 800000, MBps: 51.2, Count: 1000, Sent: 1000, Seconds: 1})
	add(Record{Suite: "oneway", System: sysMarsmeshUSend, Name: "marsmesh USend", Payload: 64, Rate: 200000, LossPct: 1.5, Count: 985, Sent: 1000, Seconds: 1})
	add(Record{Suite: "oneway", System: sysNATS, Name: "NATS publish", Payload: 64, Rate: 700000, Count: 1000, Sent: 1000, Seconds: 1})
	for _, n := range []int{8, 64} {
		for _, l := range []int{2, 8} {
			add(Record{Suite: "fanout", System: sysMarsmesh, Name: "marsmesh SendMany", Payload: 64, Nodes: n, Limit: l, Lat: lat(float64(n*10*l), float64(n*30)), Count: 50, Seconds: 1})
		}
		add(Record{Suite: "fanout", System: sysNATS, Name: "NATS publish", Payload: 64, Nodes: n, Lat: lat(float64(n*8), float64(n*20)), Count: 50, Seconds: 1})
	}
	add(Record{Suite: "cost-rpc", System: sysMarsmesh, Name: "marsmesh SendRPC", Payload: 64, Conc: 16, Count: 1000, CPUPerM: 10, Allocs: 20, Seconds: 1})
	add(Record{Suite: "cost-rpc", System: sysGRPC, Name: "gRPC unary", Payload: 64, Conc: 16, Count: 1000, CPUPerM: 40, Allocs: 150, Seconds: 1})
	add(Record{Suite: "memory", System: "rudp", Name: "rudp Transport", Nodes: 1000, HeapPer: 51200, Count: 1000})
	return r
}

func TestMarkdownTablesAndGoals(t *testing.T) {
	md := Markdown(sampleRun(), "results/charts.svg")
	for _, want := range []string{
		"| machine | Test CPU, 2 cores",
		"`cd bench && go run . -quick`",
		"![latency and throughput charts](results/charts.svg)",
		"| 64 B | 30 / 90 / 180 | 50 / 150 / 300 | 60 / 180 / 360 | 16 / 48 / 96 | 1.88x (raw UDP) |",
		"| 64 KiB | 300 / 900 / 1,800 | 500 / 1,500 / 3,000 | 600 / 1,800 / 3,600 | n/a | 0.60x (gRPC) |",
		"| SendRPC p50 vs raw UDP ping-pong | 64 B, c=1 | 30 µs | 16 µs | 1.88x | ≤ 2.00x | **met** |",
		"| SendRPC p50 vs gRPC unary | 64 B, c=1 | 30 µs | 50 µs | 0.60x | ≤ 0.80x | **met** |",
		"| SendRPC req/s vs NATS request/reply | 64 B, c=64 | 100.0k /s | 40.0k /s | 2.50x | ≥ 2.00x | **met** |",
		"| SendRPC req/s vs gRPC unary | 64 B, c=64 | 100.0k /s | 20.0k /s | 5.00x | ≥ 4.00x | **met** |",
		"| Send msgs/s vs NATS publish | 64 B | 800.0k /s | 700.0k /s | 1.14x | > 1.00x | **met** |",
		"| SendMany to 64 nodes p99 vs NATS fan-out | limit 2 | 1,920 µs | 1,280 µs | 1.50x | < 1.00x | **missed** by 50% (1.50x over) |",
		"| 64 | 1,280 / 1,920 | 5,120 / 1,920 | 512 / 1,280 | 1.50x (limit 2) |",
		"marsmesh USend | gRPC", // not present: no gRPC one-way record in the sample
	} {
		if want == "marsmesh USend | gRPC" {
			if strings.Contains(md, want) {
				t.Errorf("unexpected column %q", want)
			}
			continue
		}
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if !strings.Contains(md, "200.0k/s, 0.00 MB/s, 1.50% lost") {
		t.Errorf("USend cell with loss missing:\n%s", md)
	}
	if !strings.Contains(md, "| marsmesh / best peer | | 0.25x (gRPC) | 0.13x (gRPC) |") {
		t.Errorf("cost ratio row missing:\n%s", md)
	}
	if !strings.Contains(md, "| rudp Transport | 1,000 | 50.0 KiB | 0.00 |") {
		t.Errorf("memory row missing")
	}
	// every table row has as many cells as its header
	lines := strings.Split(md, "\n")
	for i := 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "| ---") || strings.HasPrefix(lines[i], "| --- ") {
			want := strings.Count(lines[i-1], "|")
			for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], "|"); j++ {
				if got := strings.Count(lines[j], "|"); got != want {
					t.Errorf("row %q has %d bars, header %q has %d", lines[j], got, lines[i-1], want)
				}
			}
		}
	}
}

func TestGoalVerdicts(t *testing.T) {
	g := goal{mine: 44, peer: 20, target: 2, atMost: true}
	if g.met() || g.verdict() != "**missed** by 10% (1.10x over)" {
		t.Errorf("at-most miss: %v %q", g.met(), g.verdict())
	}
	g = goal{mine: 150, peer: 100, target: 2}
	if g.met() || g.verdict() != "**missed** by 25% (needs 1.33x more)" {
		t.Errorf("at-least miss: %q", g.verdict())
	}
	g = goal{mine: 100, peer: 100, target: 1, strict: true}
	if g.met() {
		t.Error("strict > with equal figures must miss")
	}
	if g.targetText() != "> 1.00x" {
		t.Errorf("target text %q", g.targetText())
	}
}

func TestMergeRunsTakesMedians(t *testing.T) {
	a, b, c := sampleRun(), sampleRun(), sampleRun()
	a.Records[0].Rate, b.Records[0].Rate, c.Records[0].Rate = 1, 5, 3
	a.Records[0].Lat = &Latency{P50: 10}
	b.Records[0].Lat = &Latency{P50: 30}
	c.Records[0].Lat = &Latency{P50: 20}
	b.Records[1].Err = "failed"
	m := MergeRuns([]Run{a, b, c})
	if len(m.Records) != len(a.Records) {
		t.Fatalf("%d records, want %d", len(m.Records), len(a.Records))
	}
	if m.Records[0].Rate != 3 || m.Records[0].Lat.P50 != 20 || m.Records[0].Runs != 3 {
		t.Errorf("merged %+v %+v", m.Records[0], *m.Records[0].Lat)
	}
	if m.Records[1].Runs != 2 || m.Records[1].Err != "" {
		t.Errorf("a failed run must be left out: %+v", m.Records[1])
	}
}

func TestMergedGoalsShowEveryRun(t *testing.T) {
	a, b := sampleRun(), sampleRun()
	for i := range b.Records {
		if b.Records[i].Suite == "rpc" && b.Records[i].System == sysMarsmesh && b.Records[i].Conc == 1 && b.Records[i].Payload == 64 {
			b.Records[i].Lat.P50 = 40 // 2.5x raw UDP: misses in this run
		}
	}
	md := Markdown(MergeRuns([]Run{a, b}), "")
	if !strings.Contains(md, "| SendRPC p50 vs raw UDP ping-pong | 64 B, c=1 | 35 µs | 16 µs | 2.19x | 1.88, 2.50 (1 of 2 met) | ≤ 2.00x |") {
		t.Errorf("per-run ratios missing:\n%s", md)
	}
}

func TestRunJSONRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.json")
	r := sampleRun()
	if err := saveRun(path, r); err != nil {
		t.Fatal(err)
	}
	got, err := loadRun(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != len(r.Records) || got.Records[0].Lat.P50 != r.Records[0].Lat.P50 {
		t.Fatalf("round trip lost data")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// TestXFanoutFlatColumn: the flat SendMany (fanFlat) has its own column and
// is named as the best limit when it wins.
func TestXFanoutFlatColumn(t *testing.T) {
	r := Run{Env: Env{CPU: "Test CPU", Cores: 2, GOMAXPROCS: 2, Go: "go1.26", Date: "2026-01-01 00:00 UTC"},
		Command: "cd bench && go run . -suite xfanout", Duration: "1s", Elapsed: 12}
	fan := func(system, name string, limit int, p99 float64) {
		rounds := []RoundFig{{Done: 10, P50: p99 / 2, P99: p99, Rate: 50}, {Done: 10, P50: p99 / 2, P99: p99, Rate: 50}, {Done: 10, P50: p99 / 2, P99: p99, Rate: 50}}
		rec := Record{Suite: "xfanout", System: system, Name: name, Nodes: 64, Limit: limit, Payload: 64}
		rec.fromRounds(rounds)
		r.Records = append(r.Records, rec)
	}
	fan(sysMarsmesh, "marsmesh SendMany", 8, 40000)
	fan(sysMarsmesh, "marsmesh SendMany", fanFlat, 20000)
	fan(sysNATS, "NATS publish", 0, 30000)
	md := Markdown(r, "")
	for _, want := range []string{"SendMany limit 8 | SendMany flat | NATS publish", "best limit (flat)", "0.67x"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestMergedRoundRatios: a merged report's per-round ratios cover the
// rounds of every run, each paired with the peer's round of the same run
// and position, also when one run measured fewer rounds.
func TestMergedRoundRatios(t *testing.T) {
	rec := func(system string, p50s ...float64) Record {
		r := Record{Suite: "xrpc", System: system, Payload: 64, Conc: 1}
		for _, v := range p50s {
			r.Rounds = append(r.Rounds, RoundFig{Done: 1, P50: v})
		}
		return r
	}
	runs := []Run{
		{Records: []Record{rec(sysMarsmesh, 10, 20), rec(sysUDP, 5, 10)}},
		{Records: []Record{rec(sysMarsmesh, 30), rec(sysUDP, 10, 99)}},
	}
	m := MergeRuns(runs)
	mine, peer := m.find("xrpc", sysMarsmesh, 64, 1, 0, 0), m.find("xrpc", sysUDP, 64, 1, 0, 0)
	got := roundRatios(mine, peer, fP50)
	if want := []float64{2, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("ratios %v, want %v", got, want)
	}
	if runs[0].Records[0].Rounds[0].Run != 0 {
		t.Fatal("merging changed a source run")
	}
}
