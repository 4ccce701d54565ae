package mesh

import (
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// statsReportEvery is how often a node sends its traffic totals to MARS,
// which turns them into the per-node rates of its dashboard.
const statsReportEvery = 2 * time.Second

// startStatsReport starts the goroutine that sends the node's totals to
// MARS (not for guests: MARS does not list them). Shutdown stops it.
func (n *Node) startStatsReport() {
	if n.guest {
		return
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		t := time.NewTicker(statsReportEvery)
		defer t.Stop()
		for {
			select {
			case <-n.life.done:
				return
			case <-t.C:
			}
			if n.life.closed.Load() {
				return
			}
			n.mc.SendNodeStats(n.nodeStats())
		}
	}()
}

// nodeStats is the record the node sends to MARS.
func (n *Node) nodeStats() mars.NodeStats {
	t := n.Totals()
	st := n.tr.Stats()
	return mars.NodeStats{
		MessagesSent: t.MessagesSent, MessagesReceived: t.MessagesReceived, MessageSendErrors: t.MessageSendErrors,
		RPCs: t.RPCs, RPCErrors: t.RPCErrors,
		DatagramsIn: st.PacketsIn, DatagramsOut: st.PacketsOut,
		BytesIn: st.BytesIn, BytesOut: st.BytesOut,
		Sessions:        uint64(st.Sessions),
		TopicsPublished: n.ps.published.Load(), TopicsDelivered: n.ps.delivered.Load(),
	}
}
