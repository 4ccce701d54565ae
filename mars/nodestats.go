package mars

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
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
}

// nodeStatsFields is how many counters a record carries; a decoder ignores
// counters past the ones it knows, and reads missing ones as 0.
const nodeStatsFields = 10

// maxNodeStatsFields bounds the counters a record may carry.
const maxNodeStatsFields = 64

func (st *NodeStats) fields() [nodeStatsFields]*uint64 {
	return [nodeStatsFields]*uint64{&st.MessagesSent, &st.MessagesReceived, &st.MessageSendErrors,
		&st.RPCs, &st.RPCErrors, &st.DatagramsIn, &st.DatagramsOut, &st.BytesIn, &st.BytesOut, &st.Sessions}
}

// nodeStatsMsg is a KindNodeStats message: [app, addr, inc, [counters...]].
type nodeStatsMsg struct {
	App   string
	Addr  string
	Inc   uint64
	Stats NodeStats
}

func (m *nodeStatsMsg) append(b []byte) []byte {
	b = appendArrayLen(b, 4)
	b = appendString(b, m.App)
	b = appendString(b, m.Addr)
	b = appendUint(b, m.Inc)
	b = appendArrayLen(b, nodeStatsFields)
	for _, f := range m.Stats.fields() {
		b = appendUint(b, *f)
	}
	return b
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
	for i := 4; i < n && r.err == nil; i++ {
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
	m := nodeStatsMsg{App: c.App(), Addr: c.addr, Inc: c.inc, Stats: st}
	return c.tr.Send(*to, KindNodeStats, m.append(make([]byte, 0, 128)))
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
}

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
	se.cur, se.curAt = r.Stats, s.now()
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
		dt := float64(se.curAt-se.prevAt) / 1e9
		rate := func(cur, prev uint64) float64 {
			if cur < prev {
				return 0
			}
			return float64(cur-prev) / dt
		}
		out.Rates = &NodeRates{
			MessagesSent:     rate(se.cur.MessagesSent, se.prev.MessagesSent),
			MessagesReceived: rate(se.cur.MessagesReceived, se.prev.MessagesReceived),
			RPCs:             rate(se.cur.RPCs, se.prev.RPCs),
			RPCErrors:        rate(se.cur.RPCErrors, se.prev.RPCErrors),
			DatagramsIn:      rate(se.cur.DatagramsIn, se.prev.DatagramsIn),
			DatagramsOut:     rate(se.cur.DatagramsOut, se.prev.DatagramsOut),
			BytesIn:          rate(se.cur.BytesIn, se.prev.BytesIn),
			BytesOut:         rate(se.cur.BytesOut, se.prev.BytesOut),
		}
	}
	return out
}

// NodeStatsSnapshot is a node's latest stats record, with rates computed
// from the two latest records.
type NodeStatsSnapshot struct {
	NodeStats
	AgeMs int64      `json:"ageMs"` // how old the latest record is
	Rates *NodeRates `json:"rates,omitempty"`
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
}
