package main

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the q-quantile (0 <= q <= 1) of sorted samples by the
// nearest-rank method: the smallest sample with at least q of all samples
// at or below it. It returns 0 for no samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	if q <= 0 {
		return sorted[0]
	}
	if q >= 1 {
		return sorted[len(sorted)-1]
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

// Latency is the distribution summary the tables show.
type Latency struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
}

// Summarize sorts samples in place and summarises them in microseconds.
func Summarize(samples []time.Duration) Latency {
	slices.Sort(samples)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return Latency{
		N:    len(samples),
		P50:  us(Percentile(samples, 0.50)),
		P99:  us(Percentile(samples, 0.99)),
		P999: us(Percentile(samples, 0.999)),
		Max:  us(Percentile(samples, 1)),
	}
}

// Median returns the median of xs (the mean of the middle two for an even
// count), ignoring NaNs; NaN when nothing is left.
func Median(xs []float64) float64 {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}
