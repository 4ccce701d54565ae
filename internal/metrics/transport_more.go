package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/rudp"
)

func transportDescs() []*prometheus.Desc {
	return []*prometheus.Desc{trDatagramsIn, trDatagramsOut, trBad, trWriteErrors, trSessions}
}

// collectMore exports the counters the rudp branch adds (after its merge).
func collectMore(ch chan<- prometheus.Metric, counter func(*prometheus.Desc, uint64), st rudp.Stats) {
}
