package admin

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/internal/version"
	"github.com/marsmesh/marsmesh/mesh"
)

// NodeOptions returns the collectors, readiness and status of a node's
// admin endpoint. /readyz is ready while the node is in touch with MARS
// (Node.InTouchWithMars: MARS answered within the last three sync
// intervals), the same rule as `node healthcheck -ready`.
func NodeOptions(n *mesh.Node, addr, marsAddr string) Options {
	started := time.Now()
	return Options{
		Addr:       addr,
		Collectors: []prometheus.Collector{n.Collector()},
		Ready: func() error {
			if !n.InTouchWithMars() {
				return errors.New("not in touch with MARS at " + marsAddr)
			}
			return nil
		},
		Status: func() any {
			self := n.Mars().Self()
			view := n.Mars().View()
			byStatus := map[string]int{}
			for _, nd := range view.Nodes() {
				byStatus[nd.Status.String()]++
			}
			return map[string]any{
				"role":            "node",
				"addr":            n.Addr,
				"type":            self.Type,
				"nodeRole":        self.Role,
				"endpoint":        self.EndPoint,
				"app":             n.Mars().App(),
				"values":          self.Values,
				"guest":           n.IsGuest(),
				"partOfCluster":   n.IsPartOfCluster(),
				"inTouchWithMars": n.InTouchWithMars(),
				"mars":            marsAddr,
				"viewNodes":       byStatus,
				"totals":          n.Totals(),
				"version":         version.Get(),
				"started":         started.UTC().Format(time.RFC3339),
				"uptimeSec":       int64(time.Since(started).Seconds()),
			}
		},
	}
}
