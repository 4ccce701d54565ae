package mesh

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// TopicStats is a node's pub-sub activity (Node.TopicStats): counters
// since the node started, its subscriptions, and the interest it routes by.
type TopicStats struct {
	Published     uint64 // Publish and Request calls
	Delivered     uint64 // messages handed to this node's handlers
	Dropped       uint64 // messages dropped at a subscription's pending limit
	SlowConsumers uint64 // times a subscription reached its pending limit
	Retries       uint64 // queue deliveries and Requests sent again to another member
	Refused       uint64 // messages refused because this node drains
	QueueFailed   uint64 // queue-group messages no member took (published here)

	PublishedByTopic map[string]uint64 // per topic (at most 1,024; the rest under "other")
	Subscriptions    []SubscriptionStats
	Interest         []NodeInterest // the other nodes' interest this node knows, by address
}

// SubscriptionStats describes one subscription.
type SubscriptionStats struct {
	Pattern      string `json:"pattern"`
	Group        string `json:"group,omitempty"`
	Delivered    uint64 `json:"delivered"`
	Dropped      uint64 `json:"dropped"`
	PendingMsgs  int    `json:"pendingMsgs"`
	PendingBytes int    `json:"pendingBytes"`
}

// NodeInterest is what another node subscribes to, as this node knows it.
type NodeInterest struct {
	Addr     string   `json:"addr"`
	Version  uint64   `json:"version"`
	Patterns []string `json:"patterns"` // "pattern", or "pattern queue=group"
}

// TopicStats returns the node's pub-sub counters, subscriptions and the
// interest it knows of.
func (n *Node) TopicStats() TopicStats {
	ps := n.ps
	st := TopicStats{
		Published: ps.published.Load(), Delivered: ps.delivered.Load(), Dropped: ps.dropped.Load(),
		SlowConsumers: ps.slowConsumers.Load(), Retries: ps.retries.Load(), Refused: ps.refused.Load(),
		QueueFailed: ps.queueFailed.Load(),
	}
	ps.topicMu.Lock()
	st.PublishedByTopic = maps.Clone(ps.byTopic)
	ps.topicMu.Unlock()
	for _, s := range ps.subscriptions() {
		m, b := s.Pending()
		st.Subscriptions = append(st.Subscriptions, SubscriptionStats{Pattern: s.pattern, Group: s.group,
			Delivered: s.Delivered(), Dropped: s.Dropped(), PendingMsgs: m, PendingBytes: b})
	}
	ps.rmu.Lock()
	for addr, ri := range ps.remote {
		ni := NodeInterest{Addr: addr, Version: ri.ver}
		for _, e := range ri.entries {
			p := e.pattern
			if e.group != "" {
				p += " queue=" + e.group
			}
			ni.Patterns = append(ni.Patterns, p)
		}
		st.Interest = append(st.Interest, ni)
	}
	ps.rmu.Unlock()
	slices.SortFunc(st.Interest, func(a, b NodeInterest) int { return compareStrings(a.Addr, b.Addr) })
	return st
}

// Pub-sub metrics (Collector). Per-subscription series are labelled by
// pattern and queue group: one series per subscription entry (at most
// maxInterest per node).
var (
	descTopicPublished = prometheus.NewDesc("marsmesh_topic_published_total",
		"Messages published on this node (Publish and Request).", nil, nil)
	descTopicDelivered = prometheus.NewDesc("marsmesh_topic_delivered_total",
		"Messages handed to this node's subscriptions, by pattern and queue group.", []string{"pattern", "group"}, nil)
	descTopicDropped = prometheus.NewDesc("marsmesh_topic_dropped_total",
		"Messages dropped at a subscription's pending limit, by pattern and queue group.", []string{"pattern", "group"}, nil)
	descTopicPending = prometheus.NewDesc("marsmesh_topic_pending_messages",
		"Messages waiting for a subscription's handler, by pattern and queue group.", []string{"pattern", "group"}, nil)
	descTopicSlow = prometheus.NewDesc("marsmesh_topic_slow_consumers_total",
		"Times a subscription of this node reached its pending limit.", nil, nil)
	descTopicRetries = prometheus.NewDesc("marsmesh_topic_retries_total",
		"Queue deliveries and Requests sent again to another member (the first refused, drained or died).", nil, nil)
	descTopicQueueFailed = prometheus.NewDesc("marsmesh_topic_queue_failed_total",
		"Queue-group messages published here that no member took.", nil, nil)
	descTopicRefused = prometheus.NewDesc("marsmesh_topic_refused_total",
		"Messages this node refused because it drains.", nil, nil)
)

func describeTopics(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTopicPublished, descTopicDelivered, descTopicDropped, descTopicPending,
		descTopicSlow, descTopicRetries, descTopicQueueFailed, descTopicRefused} {
		ch <- d
	}
}

func (n *Node) collectTopics(ch chan<- prometheus.Metric) {
	ps := n.ps
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descTopicPublished, ps.published.Load())
	counter(descTopicSlow, ps.slowConsumers.Load())
	counter(descTopicRetries, ps.retries.Load())
	counter(descTopicQueueFailed, ps.queueFailed.Load())
	counter(descTopicRefused, ps.refused.Load())
	type sums struct {
		delivered, dropped uint64
		pending            int
	}
	by := make(map[interestEntry]*sums)
	for _, s := range ps.subscriptions() {
		e := interestEntry{s.pattern, s.group}
		if by[e] == nil {
			by[e] = new(sums)
		}
		m, _ := s.Pending()
		by[e].delivered += s.Delivered()
		by[e].dropped += s.Dropped()
		by[e].pending += m
	}
	for e, v := range by {
		counter(descTopicDelivered, v.delivered, e.pattern, e.group)
		counter(descTopicDropped, v.dropped, e.pattern, e.group)
		ch <- prometheus.MustNewConstMetric(descTopicPending, prometheus.GaugeValue, float64(v.pending), e.pattern, e.group)
	}
}
