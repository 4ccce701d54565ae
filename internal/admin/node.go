package admin

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/internal/version"
	"github.com/marsmesh/marsmesh/mesh"
)

// NodeOptions returns the collectors, readiness and status of a node's
// admin endpoint. /readyz is ready while the node serves (Node.Serving:
// it has joined the cluster and is not draining), the same rule as `node
// healthcheck -ready`; a MARS outage does not make a serving node unready
// (contact with MARS is in /v1/status and the metrics). marsAddr is the
// configured MARS address list, for messages and the status.
func NodeOptions(n *mesh.Node, addr, marsAddr string) Options {
	started := time.Now()
	return Options{
		Addr:       addr,
		Collectors: []prometheus.Collector{n.Collector()},
		Ready: func() error {
			switch {
			case n.IsDraining():
				return errors.New("draining")
			case !n.Serving():
				return errors.New("not joined yet (no sync with MARS at " + marsAddr + ")")
			}
			return nil
		},
		Status: func() any { return nodeStatus(n, marsAddr, started) },
	}
}

// nodeStatus is a node's /v1/status: who it is, how it stands with MARS
// (the replica in use and every replica's state) and its traffic totals.
func nodeStatus(n *mesh.Node, marsAddr string, started time.Time) map[string]any {
	mc := n.Mars()
	self := mc.Self()
	byStatus := map[string]int{}
	for _, nd := range mc.View().Nodes() {
		byStatus[nd.Status.String()]++
	}
	lastSync := int64(-1)
	if age, ok := mc.SyncAge(); ok {
		lastSync = age.Milliseconds()
	}
	t := n.Totals()
	return map[string]any{
		"role":          "node",
		"addr":          n.Addr,
		"type":          self.Type,
		"nodeRole":      self.Role,
		"endpoint":      self.EndPoint,
		"app":           mc.App(),
		"values":        self.Values,
		"guest":         n.IsGuest(),
		"partOfCluster": n.IsPartOfCluster(),
		"serving":       n.Serving(),
		"draining":      n.IsDraining(),
		"viewNodes":     byStatus,
		"mars": map[string]any{
			"configured": marsAddr, // marsAddress:marsPort, every address
			"inUse":      mc.MarsInUse(),
			"replicas":   mc.Replicas(),
			"inTouch":    n.InTouchWithMars(),
			"lastSyncMs": lastSync, // -1: never
		},
		"traffic": map[string]uint64{
			"messagesSent": t.MessagesSent, "messagesReceived": t.MessagesReceived,
			"messageSendErrors": t.MessageSendErrors, "rpcs": t.RPCs, "rpcErrors": t.RPCErrors,
		},
		"version":   version.Get(),
		"started":   started.UTC().Format(time.RFC3339),
		"uptimeSec": int64(time.Since(started).Seconds()),
	}
}
