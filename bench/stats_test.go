package main

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 1000; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0.0001, 1}} {
		if got := Percentile(s, c.q); got != c.want {
			t.Errorf("Percentile(1..1000, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
	if got := Percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("one sample: %v", got)
	}
	// nearest rank: p50 of 4 samples is the 2nd
	if got := Percentile([]time.Duration{1, 2, 3, 4}, 0.5); got != 2 {
		t.Errorf("p50 of 4: %v", got)
	}
}

func TestSummarizeSortsAndConverts(t *testing.T) {
	s := []time.Duration{5 * time.Microsecond, time.Microsecond, 3 * time.Microsecond, 2 * time.Microsecond, 4 * time.Microsecond}
	l := Summarize(s)
	if l.N != 5 || l.P50 != 3 || l.P99 != 5 || l.P999 != 5 || l.Max != 5 {
		t.Fatalf("Summarize = %+v", l)
	}
	if s[0] != time.Microsecond || s[4] != 5*time.Microsecond {
		t.Fatalf("samples not sorted: %v", s)
	}
	if l := Summarize(nil); l.N != 0 || l.P50 != 0 {
		t.Fatalf("empty: %+v", l)
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd: %v", got)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("even: %v", got)
	}
	if got := Median([]float64{math.NaN(), 5}); got != 5 {
		t.Errorf("NaN ignored: %v", got)
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("empty: %v", got)
	}
}

func TestCountFor(t *testing.T) {
	if got := countFor(60000, 1024); got != 60000 {
		t.Errorf("1 KiB: %d", got)
	}
	if got := countFor(60000, 64<<10); got != 3750 {
		t.Errorf("64 KiB: %d", got)
	}
	if got := countFor(100, 1<<20); got != 200 {
		t.Errorf("floor: %d", got)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"": "''", "-svg": "-svg", "a b": "'a b'", "it's": `'it'\''s'`, "results/run-1.json,x.json": "results/run-1.json,x.json"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
