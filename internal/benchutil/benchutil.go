// Package benchutil holds helpers shared by the packages' Go benchmarks.
package benchutil

import (
	"slices"
	"testing"
	"time"
)

// ReportLatency reports the p50 and p99 of lat (in µs) as benchmark metrics.
func ReportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-us")
}
