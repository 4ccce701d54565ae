package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// fmtUs formats microseconds for a table: one decimal below 10, none
// above, thousands separated.
func fmtUs(v float64) string {
	switch {
	case math.IsNaN(v) || v <= 0:
		return "–"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return thousands(int64(math.Round(v)))
}

// fmtRate formats a per-second rate: 950, 12.3k, 1.23M.
func fmtRate(v float64) string {
	switch {
	case math.IsNaN(v) || v <= 0:
		return "–"
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v < 1e6:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
}

// fmtRatio formats a ratio as 1.23x.
func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return "–"
	}
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64) + "x"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

// fmtNum formats a plain figure with up to 2 decimals (fewer when large).
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 100:
		return thousands(int64(math.Round(v)))
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func fmtBytes(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 1<<20:
		return strconv.FormatFloat(v/(1<<20), 'f', 2, 64) + " MiB"
	case math.Abs(v) >= 1<<10:
		return strconv.FormatFloat(v/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " B"
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// best picks the best of vals (name -> value; NaN or <= 0 means not
// measured): the lowest when lower is better, else the highest.
func best(vals map[string]float64, lowerBetter bool) (string, float64) {
	name, v := "", math.NaN()
	for _, k := range sortedKeys(vals) {
		x := vals[k]
		if math.IsNaN(x) || x <= 0 {
			continue
		}
		if math.IsNaN(v) || (lowerBetter && x < v) || (!lowerBetter && x > v) {
			name, v = k, x
		}
	}
	return name, v
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ratioCell is "marsmesh / best peer" with the peer named: 0.85x (NATS).
func ratioCell(mine float64, peers map[string]float64, lowerBetter bool) string {
	name, v := best(peers, lowerBetter)
	if name == "" || math.IsNaN(mine) || mine <= 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s)", fmtRatio(mine/v), name)
}
