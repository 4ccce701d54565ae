package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/rudp"
)

var (
	trBytesIn   = prometheus.NewDesc("marsmesh_transport_received_bytes_total", "UDP payload bytes received by the rudp transport.", nil, nil)
	trBytesOut  = prometheus.NewDesc("marsmesh_transport_sent_bytes_total", "UDP payload bytes sent by the rudp transport.", nil, nil)
	trRetrans   = prometheus.NewDesc("marsmesh_transport_retransmissions_total", "Reliable (KCP) data segments sent again.", nil, nil)
	trSplits    = prometheus.NewDesc("marsmesh_transport_unreliable_splits_total", "Unreliable messages split into fragments.", nil, nil)
	trReasmDrop = prometheus.NewDesc("marsmesh_transport_reassembly_drops_total",
		"Incomplete unreliable messages dropped (parts missing past the TTL, too large, or over the memory budget).", nil, nil)
	trPeersDead = prometheus.NewDesc("marsmesh_transport_peers_dead_total",
		"Peers declared dead (silence, unanswered handshake, reset, protocol error; not graceful closes).", nil, nil)
	trPaused = prometheus.NewDesc("marsmesh_backpressure_transport_pauses_total",
		"Times a peer's delivery was paused because its consumer fell behind (backpressure).", nil, nil)
)

func transportDescs() []*prometheus.Desc {
	return []*prometheus.Desc{trDatagramsIn, trDatagramsOut, trBad, trWriteErrors, trSessions,
		trBytesIn, trBytesOut, trRetrans, trSplits, trReasmDrop, trPeersDead, trPaused}
}

// collectMore exports the counters the rudp branch added to Stats.
func collectMore(_ chan<- prometheus.Metric, counter func(*prometheus.Desc, uint64), st rudp.Stats) {
	counter(trBytesIn, st.BytesIn)
	counter(trBytesOut, st.BytesOut)
	counter(trRetrans, st.Retransmits)
	counter(trSplits, st.Splits)
	counter(trReasmDrop, st.ReassemblyDrops)
	counter(trPeersDead, st.PeersDead)
	counter(trPaused, st.Paused)
}
