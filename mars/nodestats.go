package mars

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// KindNodeStats: node -> MARS. A node's running traffic totals, sent about
// every 2 s. MARS keeps the last two per node for its admin endpoint and
// dashboard (rates) and never syncs them to nodes; they go with the node.
const KindNodeStats byte = 0x4E

// NodeStats are a node's running traffic totals.
type NodeStats struct {
	MessagesSent      uint64 `json:"messagesSent"`
	MessagesReceived  uint64 `json:"messagesReceived"`
	MessageSendErrors uint64 `json:"messageSendErrors"`
	RPCs              uint64 `json:"rpcs"`      // RPCs and requests sent
	RPCErrors         uint64 `json:"rpcErrors"` // of which failed (remote error, timeout, send error)
	DatagramsIn       uint64 `json:"datagramsIn"`
	DatagramsOut      uint64 `json:"datagramsOut"`
	BytesIn           uint64 `json:"bytesIn"`
	BytesOut          uint64 `json:"bytesOut"`
	Sessions          uint64 `json:"sessions"`
	TopicsPublished   uint64 `json:"topicsPublished"` // pub-sub: messages published (Publish, Request)
	TopicsDelivered   uint64 `json:"topicsDelivered"` // pub-sub: messages handed to the node's subscriptions
}

// nodeStatsFields is how many counters a record carries; a decoder ignores
// counters past the ones it knows, and reads missing ones as 0.
const nodeStatsFields = 12

// maxNodeStatsFields bounds the counters a record may carry.
const maxNodeStatsFields = 64

func (st *NodeStats) fields() [nodeStatsFields]*uint64 {
	return [nodeStatsFields]*uint64{&st.MessagesSent, &st.MessagesReceived, &st.MessageSendErrors,
		&st.RPCs, &st.RPCErrors, &st.DatagramsIn, &st.DatagramsOut, &st.BytesIn, &st.BytesOut, &st.Sessions,
		&st.TopicsPublished, &st.TopicsDelivered}
}

// nodeStatsMsg is a KindNodeStats message: [app, addr, inc, [counters...],
// mars, [replica...], [peer...]], each replica [addr, state, lastAnswerMs+1,
// failedMs] and each peer [addr, rttMicros, retransmits]. The last three
// fields came later: a decoder reads a record without them, skips fields
// past the ones it knows, and ignores trailing elements of a replica or a
// peer.
type nodeStatsMsg struct {
	App      string
	Addr     string
	Inc      uint64
	Stats    NodeStats
	Mars     string          // the MARS address the node uses
	Replicas []ReplicaStatus // every MARS address of the node, as it sees them
	Peers    []PeerStat
}

// PeerStat is a node's session with another node: KCP's smoothed round
// trip (millisecond resolution) and the data segments sent again.
type PeerStat struct {
	Addr        string  `json:"addr"`
	RTTMs       float64 `json:"rttMs"`
	Retransmits uint64  `json:"retransmits"`
}

// Bounds of a stats record's lists: at most maxReplicaStats MARS addresses
// and maxPeerStats peers (a node with more sends the first by address).
const (
	maxReplicaStats = 16
	maxPeerStats    = 64
)

func (m *nodeStatsMsg) append(b []byte) []byte {
	b = appendArrayLen(b, 7)
	b = appendString(b, m.App)
	b = appendString(b, m.Addr)
	b = appendUint(b, m.Inc)
	b = appendArrayLen(b, nodeStatsFields)
	for _, f := range m.Stats.fields() {
		b = appendUint(b, *f)
	}
	b = appendString(b, m.Mars)
	b = appendArrayLen(b, len(m.Replicas))
	for _, r := range m.Replicas {
		b = appendArrayLen(b, 4)
		b = appendString(appendString(b, r.Addr), r.State)
		b = appendUint(appendUint(b, uint64(r.LastAnswerMs+1)), uint64(r.FailedMs))
	}
	b = appendArrayLen(b, len(m.Peers))
	for _, p := range m.Peers {
		b = appendArrayLen(b, 3)
		b = appendString(b, p.Addr)
		b = appendUint(appendUint(b, uint64(math.Round(p.RTTMs*1000))), p.Retransmits)
	}
	return b
}

// list reads an array header of at most max elements, each itself an
// array of at least minFields, and calls each for every element with the
// reader placed on its first field; fields past minFields are skipped.
func (r *reader) list(max, minFields int, each func()) {
	n := r.arrayLen()
	if r.err == nil && n > max {
		r.fail(fmt.Errorf("%d elements, limit %d", n, max))
	}
	for i := 0; i < n && r.err == nil; i++ {
		k := r.arrayLen()
		if r.err == nil && k < minFields {
			r.fail(fmt.Errorf("an element of %d fields, want %d", k, minFields))
		}
		if r.err != nil {
			return
		}
		each()
		for j := minFields; j < k && r.err == nil; j++ {
			r.skip(maxValueDepth)
		}
	}
}

func decodeNodeStats(p []byte) (*nodeStatsMsg, error) {
	r := reader{b: p}
	n := r.arrayLen()
	if r.err == nil && n < 4 {
		return nil, fmt.Errorf("%w: node stats have %d fields, want 4", ErrProtocol, n)
	}
	m := &nodeStatsMsg{App: r.str(MaxAppLen * 4), Addr: r.str(MaxAddrLen), Inc: r.uint()}
	c := r.arrayLen()
	if r.err == nil && c > maxNodeStatsFields {
		r.fail(fmt.Errorf("%d counters, limit %d", c, maxNodeStatsFields))
	}
	fields := m.Stats.fields()
	for i := 0; i < c && r.err == nil; i++ {
		v := r.uint()
		if i < len(fields) {
			*fields[i] = v
		}
	}
	if n > 4 && r.err == nil {
		m.Mars = r.str(MaxAddrLen)
	}
	if n > 5 && r.err == nil {
		r.list(maxReplicaStats, 4, func() {
			rs := ReplicaStatus{Addr: r.str(MaxAddrLen), State: r.str(16)}
			rs.LastAnswerMs = int64(min(r.uint(), 1<<62)) - 1
			rs.FailedMs = int64(min(r.uint(), 1<<62))
			m.Replicas = append(m.Replicas, rs)
		})
	}
	if n > 6 && r.err == nil {
		r.list(maxPeerStats, 3, func() {
			p := PeerStat{Addr: r.str(MaxAddrLen), RTTMs: float64(min(r.uint(), 1<<40)) / 1000}
			p.Retransmits = r.uint()
			m.Peers = append(m.Peers, p)
		})
	}
	for i := 7; i < n && r.err == nil; i++ {
		r.skip(maxValueDepth)
	}
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: node stats: %v", ErrProtocol, r.err)
	}
	return m, nil
}

// SendNodeStats sends the node's traffic totals to MARS (best effort: it
// does nothing before the MARS address is resolved, and guests send
// nothing since MARS does not list them).
func (c *Client) SendNodeStats(st NodeStats) error {
	if c.cfg.Guest || c.closed.Load() {
		return nil
	}
	to := c.mars.Load()
	if to == nil {
		return nil
	}
	m := nodeStatsMsg{App: c.App(), Addr: c.addr, Inc: c.inc, Stats: st, Mars: to.String(),
		Replicas: c.Replicas(), Peers: c.peerStats()}
	if len(m.Replicas) > maxReplicaStats {
		m.Replicas = m.Replicas[:maxReplicaStats]
	}
	return c.tr.Send(*to, KindNodeStats, m.append(make([]byte, 0, 128+40*len(m.Peers))))
}

// peerStats lists the transport's sessions with nodes of the view (not
// with MARS or guests), by address, at most maxPeerStats.
func (c *Client) peerStats() []PeerStat {
	tr, ok := c.tr.(interface {
		Peers() []netip.AddrPort
		Peer(netip.AddrPort) (rudp.PeerStatus, bool)
	})
	if !ok {
		return nil
	}
	addrs := tr.Peers()
	slices.SortFunc(addrs, func(a, b netip.AddrPort) int { return a.Compare(b) })
	var out []PeerStat
	for _, a := range addrs {
		if len(out) == maxPeerStats {
			break
		}
		s := a.String()
		if _, listed := c.view.Node(s); !listed || s == c.addr {
			continue
		}
		if st, up := tr.Peer(a); up && st.Established {
			out = append(out, PeerStat{Addr: s, RTTMs: float64(st.RTT) / float64(time.Millisecond), Retransmits: st.Retransmits})
		}
	}
	return out
}

// nodeStatsTable is what MARS keeps for its admin endpoint: the last two
// stats records of every listed node, and the nodes removed recently.
// Guarded by the server's mutex, except the atomic counters.
type nodeStatsTable struct {
	byNode map[statsKey]*statsEntry
	gone   []GoneNode // oldest first, at most maxGone, none older than goneFor

	reportBytes atomic.Uint64 // bytes of reports received (sync bytes in)
	statsMsgs   atomic.Uint64 // node stats records received
}

type statsKey struct{ app, addr string }

type statsEntry struct {
	inc       uint64
	cur, prev NodeStats
	curAt     int64 // server clock, ns; 0 = none
	prevAt    int64
	latest    *nodeStatsMsg // the latest record (its MARS, replicas and peers)
	hist      []histPoint   // rates between consecutive records, oldest first, at most histLen
}

// histPoint is a node's rates between two consecutive records.
type histPoint struct {
	at         int64 // Unix ms of the later record
	msgs, rpcs float32
}

// histLen is how many rates MARS keeps per node: three minutes of records
// sent every 2 s.
const histLen = 90

// GoneNode is a node MARS removed recently (silent past RemoveAfter).
type GoneNode struct {
	App      string    `json:"app"`
	Addr     string    `json:"addr"`
	Type     string    `json:"type"`
	Role     string    `json:"role"`
	EndPoint string    `json:"endpoint"`
	LastSeen time.Time `json:"lastSeen"`
	Removed  time.Time `json:"removed"`
}

const (
	maxGone = 256
	goneFor = 10 * time.Minute
)

// handleNodeStats stores a node's stats record (under s.mu). Records of
// nodes MARS does not list, or of an older incarnation, are dropped.
func (s *Server) handleNodeStats(m inMsg) {
	s.nstats.statsMsgs.Add(1)
	r, err := decodeNodeStats(m.p)
	if err != nil {
		s.refuse(m.from, "", 0, CodeBadMessage, err.Error())
		return
	}
	a := s.apps[r.App]
	if a == nil {
		return
	}
	e := a.nodes[r.Addr]
	if e == nil || e.inc != r.Inc {
		return
	}
	if s.nstats.byNode == nil {
		s.nstats.byNode = make(map[statsKey]*statsEntry)
	}
	k := statsKey{r.App, r.Addr}
	se := s.nstats.byNode[k]
	if se == nil || se.inc != r.Inc {
		se = &statsEntry{inc: r.Inc}
		s.nstats.byNode[k] = se
	}
	se.prev, se.prevAt = se.cur, se.curAt
	se.cur, se.curAt, se.latest = r.Stats, s.now(), r
	if se.prevAt != 0 && se.curAt > se.prevAt {
		rt := ratesOf(se.cur, se.prev, se.curAt-se.prevAt)
		if len(se.hist) == histLen {
			se.hist = append(se.hist[:0], se.hist[1:]...)
		}
		se.hist = append(se.hist, histPoint{at: time.Now().UnixMilli(),
			msgs: float32(rt.MessagesSent + rt.MessagesReceived), rpcs: float32(rt.RPCs)})
	}
}

// ratesOf returns the per-second rates between two records dt ns apart
// (a counter that went down, e.g. after a restart, counts 0).
func ratesOf(cur, prev NodeStats, dt int64) *NodeRates {
	sec := float64(dt) / 1e9
	rate := func(c, p uint64) float64 {
		if c < p {
			return 0
		}
		return float64(c-p) / sec
	}
	return &NodeRates{
		MessagesSent:     rate(cur.MessagesSent, prev.MessagesSent),
		MessagesReceived: rate(cur.MessagesReceived, prev.MessagesReceived),
		RPCs:             rate(cur.RPCs, prev.RPCs),
		RPCErrors:        rate(cur.RPCErrors, prev.RPCErrors),
		DatagramsIn:      rate(cur.DatagramsIn, prev.DatagramsIn),
		DatagramsOut:     rate(cur.DatagramsOut, prev.DatagramsOut),
		BytesIn:          rate(cur.BytesIn, prev.BytesIn),
		BytesOut:         rate(cur.BytesOut, prev.BytesOut),
		TopicsPublished:  rate(cur.TopicsPublished, prev.TopicsPublished),
		TopicsDelivered:  rate(cur.TopicsDelivered, prev.TopicsDelivered),
	}
}

// nodeRemoved forgets a removed node's stats and remembers it as gone
// (under s.mu).
func (s *Server) nodeRemoved(a *appState, e *nodeEntry, now int64) {
	delete(s.nstats.byNode, statsKey{a.name, e.addr})
	wall := time.Now()
	g := GoneNode{App: a.name, Addr: e.addr, Type: e.info.Type, Role: e.info.Role, EndPoint: e.info.EndPoint,
		LastSeen: wall.Add(-time.Duration(now - e.lastSeen)), Removed: wall}
	s.nstats.gone = append(s.nstats.gone, g)
	s.pruneGone(wall)
}

func (s *Server) pruneGone(now time.Time) {
	gone := s.nstats.gone
	drop := max(len(gone)-maxGone, 0)
	for drop < len(gone) && now.Sub(gone[drop].Removed) > goneFor {
		drop++
	}
	if drop > 0 {
		s.nstats.gone = append(gone[:0:0], gone[drop:]...)
	}
}

// noteReport counts the bytes of a report (sync bytes in).
func (s *Server) noteReport(p []byte) { s.nstats.reportBytes.Add(uint64(len(p))) }

// statsOf returns a node's latest stats and its rates per second (nil
// when MARS has none).
func (s *Server) statsOf(app, addr string, inc uint64, now int64) *NodeStatsSnapshot {
	se := s.nstats.byNode[statsKey{app, addr}]
	if se == nil || se.inc != inc || se.curAt == 0 {
		return nil
	}
	out := &NodeStatsSnapshot{NodeStats: se.cur, AgeMs: (now - se.curAt) / int64(time.Millisecond)}
	if se.prevAt != 0 && se.curAt > se.prevAt {
		out.Rates = ratesOf(se.cur, se.prev, se.curAt-se.prevAt)
	}
	if l := se.latest; l != nil {
		out.Mars, out.Replicas, out.Peers = l.Mars, l.Replicas, l.Peers
	}
	out.History = make([][3]float64, len(se.hist))
	for i, h := range se.hist {
		out.History[i] = [3]float64{float64(h.at), float64(h.msgs), float64(h.rpcs)}
	}
	return out
}

// NodeStatsSnapshot is a node's latest stats record, with rates computed
// from the two latest records.
type NodeStatsSnapshot struct {
	NodeStats
	AgeMs int64      `json:"ageMs"` // how old the latest record is
	Rates *NodeRates `json:"rates,omitempty"`
	// Mars is the MARS address the node uses, Replicas every MARS address
	// it knows with its state as the node sees it (nodes that predate them
	// send neither).
	Mars     string          `json:"mars,omitempty"`
	Replicas []ReplicaStatus `json:"replicas,omitempty"`
	// Peers are the node's sessions with other nodes.
	Peers []PeerStat `json:"peers,omitempty"`
	// History holds the rates between consecutive records over the last
	// few minutes, oldest first: [Unix ms, messages sent and received per
	// second, RPCs per second].
	History [][3]float64 `json:"history"`
}

// NodeRates are per-second rates between a node's two latest records.
type NodeRates struct {
	MessagesSent     float64 `json:"messagesSent"`
	MessagesReceived float64 `json:"messagesReceived"`
	RPCs             float64 `json:"rpcs"`
	RPCErrors        float64 `json:"rpcErrors"`
	DatagramsIn      float64 `json:"datagramsIn"`
	DatagramsOut     float64 `json:"datagramsOut"`
	BytesIn          float64 `json:"bytesIn"`
	BytesOut         float64 `json:"bytesOut"`
	TopicsPublished  float64 `json:"topicsPublished"`
	TopicsDelivered  float64 `json:"topicsDelivered"`
}
