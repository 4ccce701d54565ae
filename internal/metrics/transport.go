// Package metrics holds the Prometheus collectors shared by nodes and MARS:
// the rudp transport's counters, and the build information.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/rudp"
)

// Transport exports the counters of one rudp transport, read at scrape
// time from stats (typically (*rudp.Transport).Stats).
type Transport struct {
	stats func() rudp.Stats
}

// NewTransport returns a collector of the transport counters stats reports.
func NewTransport(stats func() rudp.Stats) *Transport { return &Transport{stats: stats} }

var (
	trDatagramsIn  = prometheus.NewDesc("marsmesh_transport_datagrams_received_total", "UDP datagrams received by the rudp transport.", nil, nil)
	trDatagramsOut = prometheus.NewDesc("marsmesh_transport_datagrams_sent_total", "UDP datagrams sent by the rudp transport.", nil, nil)
	trBad          = prometheus.NewDesc("marsmesh_transport_bad_datagrams_total", "Malformed or unexpected datagrams dropped.", nil, nil)
	trWriteErrors  = prometheus.NewDesc("marsmesh_transport_write_errors_total", "Socket writes that failed.", nil, nil)
	trSessions     = prometheus.NewDesc("marsmesh_transport_sessions", "Reliable sessions (peers) open.", nil, nil)
	trBytesIn      = prometheus.NewDesc("marsmesh_transport_received_bytes_total", "UDP payload bytes received by the rudp transport.", nil, nil)
	trBytesOut     = prometheus.NewDesc("marsmesh_transport_sent_bytes_total", "UDP payload bytes sent by the rudp transport.", nil, nil)
	trRetrans      = prometheus.NewDesc("marsmesh_transport_retransmissions_total", "Reliable (KCP) data segments sent again.", nil, nil)
	trSplits       = prometheus.NewDesc("marsmesh_transport_unreliable_splits_total", "Unreliable messages split into fragments.", nil, nil)
	trReasmDrop    = prometheus.NewDesc("marsmesh_transport_reassembly_drops_total",
		"Incomplete unreliable messages dropped (parts missing past the TTL, too large, or over the memory budget).", nil, nil)
	trPeersDead = prometheus.NewDesc("marsmesh_transport_peers_dead_total",
		"Peers declared dead (silence, unanswered handshake, reset, protocol error; not graceful closes).", nil, nil)
	trAuthFail = prometheus.NewDesc("marsmesh_transport_auth_failures_total",
		"Datagrams dropped because they did not authenticate with a cluster or session key (no or wrong key, a flipped bit, garbage). Keyed mode only.", nil, nil)
	trReplays = prometheus.NewDesc("marsmesh_transport_replays_total",
		"Authentic datagrams dropped as replays (seen before, or too old). Keyed mode only.", nil, nil)
	trHeldDrops = prometheus.NewDesc("marsmesh_transport_held_drops_total",
		"Unreliable messages dropped in keyed mode while they waited for a session that did not come up (or too many waited).", nil, nil)
	trDialBacks = prometheus.NewDesc("marsmesh_transport_dial_backs_total",
		"Handshakes started because sealed traffic came from a member address with no session here (a peer restarted, or this node did). Keyed mode only.", nil, nil)
	trPaused = prometheus.NewDesc("marsmesh_backpressure_transport_pauses_total",
		"Times a peer's delivery was paused because its consumer fell behind (backpressure).", nil, nil)
)

// Describe implements prometheus.Collector.
func (t *Transport) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range transportDescs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (t *Transport) Collect(ch chan<- prometheus.Metric) {
	st := t.stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(trDatagramsIn, st.PacketsIn)
	counter(trDatagramsOut, st.PacketsOut)
	counter(trBad, st.BadPackets)
	counter(trWriteErrors, st.WriteErrors)
	ch <- prometheus.MustNewConstMetric(trSessions, prometheus.GaugeValue, float64(st.Sessions))
	counter(trBytesIn, st.BytesIn)
	counter(trBytesOut, st.BytesOut)
	counter(trRetrans, st.Retransmits)
	counter(trSplits, st.Splits)
	counter(trReasmDrop, st.ReassemblyDrops)
	counter(trPeersDead, st.PeersDead)
	counter(trPaused, st.Paused)
	counter(trAuthFail, st.AuthFailures)
	counter(trReplays, st.Replays)
	counter(trHeldDrops, st.HeldDrops)
	counter(trDialBacks, st.DialBacks)
}

func transportDescs() []*prometheus.Desc {
	return []*prometheus.Desc{trDatagramsIn, trDatagramsOut, trBad, trWriteErrors, trSessions,
		trBytesIn, trBytesOut, trRetrans, trSplits, trReasmDrop, trPeersDead, trPaused, trAuthFail, trReplays, trHeldDrops, trDialBacks}
}
