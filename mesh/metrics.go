package mesh

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/internal/metrics"
)

// Metrics. A node counts its messages and RPCs per command ID in
// pre-allocated atomic counters (no allocation, no lock on the hot path)
// and turns them into Prometheus metrics only when scraped. Labels are
// bounded: command IDs and fixed outcome names, never addresses.

// Outcomes of an RPC or request.
const (
	outcomeOK = iota
	outcomeRemoteError
	outcomeTimeout
	outcomeSendError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "remote_error", "timeout", "send_error"}

// rpcBuckets are the upper bounds (seconds) of the RPC latency histogram:
// loopback round trips are tens of microseconds, timeouts seconds.
var rpcBuckets = [...]float64{
	50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3,
	100e-3, 250e-3, 500e-3, 1, 2.5, 5,
}

// cmdStats are the counters of one command ID.
type cmdStats struct {
	rpcs     [numOutcomes]atomic.Uint64 // RPCs and requests sent, by outcome
	sent     atomic.Uint64              // one-way messages sent
	sendErrs atomic.Uint64              // one-way messages that could not be sent
	received atomic.Uint64              // one-way messages delivered to the handler
	buckets  [len(rpcBuckets) + 1]atomic.Uint64
	sumNanos atomic.Uint64
}

// meshMetrics are a node's counters. The zero value is ready; per-command
// counters live in 256 pages of 256, allocated on first use.
type meshMetrics struct {
	pages [256]atomic.Pointer[[256]atomic.Pointer[cmdStats]]

	fanoutSends     atomic.Uint64 // SendMany and USendMany calls
	fanoutDelivered atomic.Uint64 // fan-out messages delivered here
	relayTakeovers  atomic.Uint64 // a relay could not be reached: its share was sent by this node
	queueDrops      atomic.Uint64 // one-way messages dropped: the sender's queue was full
}

// cmd returns the counters of command id, creating them on first use.
func (m *meshMetrics) cmd(id uint16) *cmdStats {
	slot := &m.pages[id>>8]
	page := slot.Load()
	if page == nil {
		slot.CompareAndSwap(nil, new([256]atomic.Pointer[cmdStats]))
		page = slot.Load()
	}
	p := &page[id&0xff]
	s := p.Load()
	if s == nil {
		p.CompareAndSwap(nil, new(cmdStats))
		s = p.Load()
	}
	return s
}

// each calls f for every command ID that has counters.
func (m *meshMetrics) each(f func(id uint16, s *cmdStats)) {
	for hi := range m.pages {
		page := m.pages[hi].Load()
		if page == nil {
			continue
		}
		for lo := range page {
			if s := page[lo].Load(); s != nil {
				f(uint16(hi<<8|lo), s)
			}
		}
	}
}

// rpcDone records one RPC or request (table RPC or command) that started
// at start and ended with *err. Health checks are not counted.
func (m *meshMetrics) rpcDone(table byte, cmd uint16, start time.Time, err *error) {
	if table == tableInternal {
		return
	}
	d := time.Since(start)
	s := m.cmd(cmd)
	s.rpcs[outcomeOf(*err)].Add(1)
	sec := d.Seconds()
	i := 0
	for i < len(rpcBuckets) && sec > rpcBuckets[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sumNanos.Add(uint64(max(d, 0)))
}

func outcomeOf(err error) int {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, ErrRequestTimeout):
		return outcomeTimeout
	case errors.Is(err, ErrSend), errors.Is(err, ErrUnhealthy):
		return outcomeSendError
	}
	return outcomeRemoteError
}

// sentDone records one one-way message (Send, USend) and its result.
func (m *meshMetrics) sentDone(cmd uint16, err *error) {
	s := m.cmd(cmd)
	if *err != nil {
		s.sendErrs.Add(1)
		return
	}
	s.sent.Add(1)
}

// delivered records a one-way message handed to its handler's queue.
func (m *meshMetrics) delivered(cmd uint16) { m.cmd(cmd).received.Add(1) }

// Totals is a node's message and RPC counters summed over command IDs.
type Totals struct {
	MessagesSent, MessagesReceived, MessageSendErrors uint64
	RPCs, RPCErrors                                   uint64 // RPCErrors: every outcome but ok
}

// Totals sums the node's counters over every command ID (what the node
// reports to MARS for its dashboard).
func (n *Node) Totals() Totals {
	var t Totals
	n.metrics.each(func(_ uint16, s *cmdStats) {
		t.MessagesSent += s.sent.Load()
		t.MessagesReceived += s.received.Load()
		t.MessageSendErrors += s.sendErrs.Load()
		for o := range s.rpcs {
			v := s.rpcs[o].Load()
			t.RPCs += v
			if o != outcomeOK {
				t.RPCErrors += v
			}
		}
	})
	return t
}

var (
	descRPCs = prometheus.NewDesc("marsmesh_rpcs_total",
		"RPCs and requests this node sent, by command ID and outcome (ok, remote_error, timeout, send_error).",
		[]string{"cmd", "outcome"}, nil)
	descRPCSeconds = prometheus.NewDesc("marsmesh_rpc_duration_seconds",
		"Time from sending an RPC or request to its result, by command ID.", []string{"cmd"}, nil)
	descMsgsSent = prometheus.NewDesc("marsmesh_messages_sent_total",
		"One-way messages (Send, USend) this node sent, by command ID and outcome (ok, send_error).",
		[]string{"cmd", "outcome"}, nil)
	descMsgsReceived = prometheus.NewDesc("marsmesh_messages_received_total",
		"One-way messages (direct or fan-out) delivered to this node's handlers, by command ID.", []string{"cmd"}, nil)
	descFanoutSends = prometheus.NewDesc("marsmesh_fanout_sends_total",
		"SendMany and USendMany calls made by this node.", nil, nil)
	descFanoutDelivered = prometheus.NewDesc("marsmesh_fanout_deliveries_total",
		"Fan-out messages delivered to this node (each message once).", nil, nil)
	descRelayTakeovers = prometheus.NewDesc("marsmesh_fanout_relay_takeovers_total",
		"Fan-out relays that could not be reached, whose share this node sent itself.", nil, nil)
	descQueueDrops = prometheus.NewDesc("marsmesh_backpressure_command_drops_total",
		"One-way messages dropped because the sender's handler queue was full (a slow consumer).", nil, nil)
	descStrictDrops = prometheus.NewDesc("marsmesh_strict_drops_total",
		"Messages dropped because strictCheckForExternal is on and MARS does not list the sender.", nil, nil)
	descInCluster = prometheus.NewDesc("marsmesh_node_part_of_cluster",
		"1 while the node is part of the cluster (IsPartOfCluster), else 0.", nil, nil)
	descInTouch = prometheus.NewDesc("marsmesh_node_in_touch_with_mars",
		"1 while MARS answered within the last three sync intervals (InTouchWithMars), else 0.", nil, nil)
	descServing = prometheus.NewDesc("marsmesh_node_serving",
		"1 while the node serves (Serving: joined the cluster and not draining; what /readyz asks), else 0.", nil, nil)
	descDroppedEvents = prometheus.NewDesc("marsmesh_backpressure_dropped_events_total",
		"Callback events delivered merged with later ones of the same peer, node or key because their callback had fallen behind (MergedEvents); none is dropped.", nil, nil)
	descSlowConsumer = prometheus.NewDesc("marsmesh_backpressure_slow_consumer_events_total",
		"Times a peer's inbound work reached its bound and the node paused reading that peer's session.", nil, nil)
	descInboundDrops = prometheus.NewDesc("marsmesh_backpressure_inbound_drops_total",
		"Unreliable inbound messages dropped because their peer was at its inbound bound.", nil, nil)
	descReplyDrops = prometheus.NewDesc("marsmesh_backpressure_reply_drops_total",
		"Answers dropped because the peer's queue was full and too many deferred answers were already waiting.", nil, nil)
	descBufferDrops = prometheus.NewDesc("marsmesh_backpressure_buffer_drops_total",
		"Buffered one-way messages (sendInterval) dropped because their peer's queue stayed full.", nil, nil)
	descViewNodes = prometheus.NewDesc("marsmesh_node_view_nodes",
		"Nodes in this node's view of the cluster, by status.", []string{"status"}, nil)
)

// nodeCollector exports a node's metrics.
type nodeCollector struct {
	n  *Node
	tr *metrics.Transport
}

// Collector returns a prometheus.Collector of the node's metrics (families
// marsmesh_*: transport, messages and RPCs by command ID, fan-out,
// backpressure). Register it on your own registry; two nodes on one
// registry need distinguishing labels (prometheus.WrapRegistererWith).
func (n *Node) Collector() prometheus.Collector {
	return &nodeCollector{n: n, tr: metrics.NewTransport(n.tr.Stats)}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	c.tr.Describe(ch)
	for _, d := range []*prometheus.Desc{descRPCs, descRPCSeconds, descMsgsSent, descMsgsReceived,
		descFanoutSends, descFanoutDelivered, descRelayTakeovers, descQueueDrops, descStrictDrops,
		descInCluster, descInTouch, descServing, descDroppedEvents, descSlowConsumer, descInboundDrops, descReplyDrops,
		descBufferDrops, descViewNodes} {
		ch <- d
	}
	describeOwners(ch) // owner_metrics.go
	describeTopics(ch) // pubsub_stats.go
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	c.tr.Collect(ch)
	m := &n.metrics
	n.metrics.each(func(id uint16, s *cmdStats) {
		cmd := itoa(id)
		for o := range s.rpcs {
			if v := s.rpcs[o].Load(); v > 0 || o == outcomeOK {
				ch <- prometheus.MustNewConstMetric(descRPCs, prometheus.CounterValue, float64(v), cmd, outcomeNames[o])
			}
		}
		var count uint64
		buckets := make(map[float64]uint64, len(rpcBuckets))
		for i, ub := range rpcBuckets {
			count += s.buckets[i].Load()
			buckets[ub] = count
		}
		count += s.buckets[len(rpcBuckets)].Load()
		if count > 0 {
			ch <- prometheus.MustNewConstHistogram(descRPCSeconds, count,
				float64(s.sumNanos.Load())/1e9, buckets, cmd)
		}
		sent, errs, recv := s.sent.Load(), s.sendErrs.Load(), s.received.Load()
		if sent+errs > 0 {
			ch <- prometheus.MustNewConstMetric(descMsgsSent, prometheus.CounterValue, float64(sent), cmd, "ok")
			ch <- prometheus.MustNewConstMetric(descMsgsSent, prometheus.CounterValue, float64(errs), cmd, "send_error")
		}
		if recv > 0 {
			ch <- prometheus.MustNewConstMetric(descMsgsReceived, prometheus.CounterValue, float64(recv), cmd)
		}
	})
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descFanoutSends, m.fanoutSends.Load())
	counter(descFanoutDelivered, m.fanoutDelivered.Load())
	counter(descRelayTakeovers, m.relayTakeovers.Load())
	counter(descQueueDrops, m.queueDrops.Load())
	counter(descStrictDrops, n.StrictDrops())
	in := 0.0
	if n.IsPartOfCluster() {
		in = 1
	}
	ch <- prometheus.MustNewConstMetric(descInCluster, prometheus.GaugeValue, in)
	touch := 0.0
	if n.InTouchWithMars() {
		touch = 1
	}
	ch <- prometheus.MustNewConstMetric(descInTouch, prometheus.GaugeValue, touch)
	serving := 0.0
	if n.Serving() {
		serving = 1
	}
	ch <- prometheus.MustNewConstMetric(descServing, prometheus.GaugeValue, serving)
	counter(descDroppedEvents, n.MergedEvents())
	counter(descSlowConsumer, n.SlowConsumerEvents())
	counter(descInboundDrops, n.InboundDrops())
	counter(descReplyDrops, n.send.drops.Load())
	if n.buffer != nil {
		counter(descBufferDrops, n.buffer.drops())
	}
	byStatus := map[string]int{"online": 0, "offline": 0, "taken": 0}
	for _, nd := range n.mc.View().Nodes() {
		byStatus[nd.Status.String()]++
	}
	for st, v := range byStatus {
		ch <- prometheus.MustNewConstMetric(descViewNodes, prometheus.GaugeValue, float64(v), st)
	}
	n.collectOwners(ch) // owner_metrics.go
	n.collectTopics(ch) // pubsub_stats.go
}

func itoa(v uint16) string {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
