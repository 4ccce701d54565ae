package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/internal/admin"
)

// startAdmin serves MARS's admin endpoint for the demo: the dashboard,
// MARS's metrics (label node="mars") and every in-process node's metrics
// (node="n1", "n2", ...), so one scrape shows the demo's load.
func (d *demo) startAdmin(addr string) (*admin.Server, error) {
	opts := admin.MarsOptions(d.srv, addr)
	opts.Logger = d.log
	opts.Collectors = nil
	nodes := d.nodes
	opts.Register = func(r prometheus.Registerer) error {
		if err := prometheus.WrapRegistererWith(prometheus.Labels{"node": "mars"}, r).Register(d.srv.Collector()); err != nil {
			return err
		}
		for i, n := range nodes {
			label := prometheus.Labels{"node": fmt.Sprintf("n%d", i+1)}
			if err := prometheus.WrapRegistererWith(label, r).Register(n.Collector()); err != nil {
				return err
			}
		}
		return nil
	}
	return admin.Start(opts)
}
