package mesh

import (
	"maps"
	"slices"
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
