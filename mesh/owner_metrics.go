package mesh

import "github.com/prometheus/client_golang/prometheus"

// Ownership metrics (Collector).
var (
	descOwnerLookups = prometheus.NewDesc("marsmesh_owner_lookups_total",
		"Owner and Owners lookups on this node, and owners picked by SendRPCToOwner and its kin.", nil, nil)
	descOwnerRetries = prometheus.NewDesc("marsmesh_owner_retries_total",
		"Calls to a key's owner sent again to the next owner because the owner was draining.", nil, nil)
	descOwnerHolds = prometheus.NewDesc("marsmesh_owner_holds",
		"Keys this node holds (Hold, not yet lost or released).", nil, nil)
	descOwnerHandoffs = prometheus.NewDesc("marsmesh_owner_handoffs_total",
		"Held keys lost to another node (their onLoss callback queued): keys to hand off.", nil, nil)
)

func describeOwners(ch chan<- *prometheus.Desc) {
	ch <- descOwnerLookups
	ch <- descOwnerRetries
	ch <- descOwnerHolds
	ch <- descOwnerHandoffs
}

func (n *Node) collectOwners(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descOwnerLookups, n.own.lookups.load())
	counter(descOwnerRetries, n.own.retries.Load())
	counter(descOwnerHandoffs, n.own.handoffs.Load())
	ch <- prometheus.MustNewConstMetric(descOwnerHolds, prometheus.GaugeValue, float64(n.HeldKeys()))
}
