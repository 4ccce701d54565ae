package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/rudp"
)

// TestTransportCounters: counters of rudp.Stats reach their metrics, and
// every described metric is collected.
func TestTransportCounters(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewTransport(func() rudp.Stats {
		return rudp.Stats{AuthFailures: 2, DialBacks: 3, HeldDrops: 4, Sessions: 5}
	}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			got[mf.GetName()] = c.GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if len(got) != len(transportDescs()) {
		t.Fatalf("%d metrics gathered, %d described", len(got), len(transportDescs()))
	}
	for name, want := range map[string]float64{
		"marsmesh_transport_dial_backs_total":    3,
		"marsmesh_transport_auth_failures_total": 2,
		"marsmesh_transport_held_drops_total":    4,
		"marsmesh_transport_sessions":            5,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
