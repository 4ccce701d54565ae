package mars

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/internal/metrics"
)

var (
	descReports      = prometheus.NewDesc("marsmesh_mars_reports_total", "Reports (registrations and heartbeats) MARS handled.", nil, nil)
	descLeaves       = prometheus.NewDesc("marsmesh_mars_leaves_total", "Graceful leaves MARS handled.", nil, nil)
	descBad          = prometheus.NewDesc("marsmesh_mars_refused_messages_total", "Messages MARS refused as malformed or invalid.", nil, nil)
	descSyncs        = prometheus.NewDesc("marsmesh_mars_syncs_sent_total", "Sync messages MARS sent.", nil, nil)
	descSyncBytesOut = prometheus.NewDesc("marsmesh_mars_sync_bytes_sent_total", "Bytes of sync messages MARS sent.", nil, nil)
	descSyncBytesIn  = prometheus.NewDesc("marsmesh_mars_sync_bytes_received_total", "Bytes of reports MARS received.", nil, nil)
	descSkipped      = prometheus.NewDesc("marsmesh_mars_backpressure_skipped_replies_total",
		"Replies MARS skipped because the node had a backlog of unacknowledged data (it asks again).", nil, nil)
	descStatsMsgs = prometheus.NewDesc("marsmesh_mars_node_stats_received_total", "Node stats records MARS received (dashboard rates).", nil, nil)
	descApps      = prometheus.NewDesc("marsmesh_mars_apps", "App names (namespaces) MARS holds.", nil, nil)
	descNodes     = prometheus.NewDesc("marsmesh_mars_nodes", "Nodes MARS lists, by app and status.", []string{"app", "status"}, nil)
	descGuests    = prometheus.NewDesc("marsmesh_mars_guests", "Guests syncing with MARS, by app.", []string{"app"}, nil)
	descShared    = prometheus.NewDesc("marsmesh_mars_shared_keys", "Shared-data keys MARS holds, by app.", []string{"app"}, nil)
)

type serverCollector struct {
	s  *Server
	tr *metrics.Transport
}

// Collector returns a prometheus.Collector of the server's metrics
// (marsmesh_mars_* and its transport's marsmesh_transport_*). App names
// are labels: their number is bounded by ServerOptions.MaxApps.
func (s *Server) Collector() prometheus.Collector {
	return &serverCollector{s: s, tr: metrics.NewTransport(s.tr.Stats)}
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	c.tr.Describe(ch)
	for _, d := range []*prometheus.Desc{descReports, descLeaves, descBad, descSyncs, descSyncBytesOut, descSyncBytesIn,
		descSkipped, descStatsMsgs, descApps, descNodes, descGuests, descShared} {
		ch <- d
	}
	kvDescribe(ch)
}

type appCounts struct {
	app                    string
	online, offline, taken int
	guests, shared         int
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	c.tr.Collect(ch)
	st := s.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descReports, st.Reports)
	counter(descLeaves, st.Leaves)
	counter(descBad, st.Bad)
	counter(descSyncs, st.Syncs)
	counter(descSyncBytesOut, st.SyncBytes)
	counter(descSyncBytesIn, s.nstats.reportBytes.Load())
	counter(descSkipped, st.Skipped)
	counter(descStatsMsgs, s.nstats.statsMsgs.Load())
	s.kvCollect(ch)

	s.mu.Lock()
	counts := make([]appCounts, 0, len(s.apps))
	for name, a := range s.apps {
		ac := appCounts{app: name, guests: len(a.guests), shared: len(a.keys)}
		for _, e := range a.nodes {
			switch e.status() {
			case StatusOnline:
				ac.online++
			case StatusOffline:
				ac.offline++
			case StatusTaken:
				ac.taken++
			}
		}
		counts = append(counts, ac)
	}
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descApps, prometheus.GaugeValue, float64(len(counts)))
	for _, ac := range counts {
		gauge := func(d *prometheus.Desc, v int, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
		}
		gauge(descNodes, ac.online, ac.app, "online")
		gauge(descNodes, ac.offline, ac.app, "offline")
		gauge(descNodes, ac.taken, ac.app, "taken")
		gauge(descGuests, ac.guests, ac.app)
		gauge(descShared, ac.shared, ac.app)
	}
}
