package mars

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// AppSnapshot is one app (namespace) as MARS holds it, for the admin
// endpoint and the dashboard.
type AppSnapshot struct {
	App    string           `json:"app"`
	Nodes  []NodeSnapshot   `json:"nodes"`  // by type, then address
	Guests int              `json:"guests"` // guests syncing the view (never listed)
	Shared map[string]int16 `json:"shared"`
	Gone   []GoneNode       `json:"gone"` // removed within the last minutes, newest first
}

// NodeSnapshot is one node as MARS lists it.
type NodeSnapshot struct {
	Addr        string                 `json:"addr"`
	Incarnation string                 `json:"incarnation"` // hex
	Type        string                 `json:"type"`
	Role        string                 `json:"role"`
	Status      string                 `json:"status"` // online, offline or taken
	EndPoint    string                 `json:"endpoint"`
	Values      map[string]interface{} `json:"values"`
	LastSeenMs  int64                  `json:"lastSeenMs"` // since its last report
	Stats       *NodeStatsSnapshot     `json:"stats,omitempty"`
}

// Snapshot copies what MARS holds: every app with its nodes, shared data,
// guest count and recently removed nodes, sorted by app name. It holds the
// server's lock while it copies (O(nodes + keys)); meant for an admin
// endpoint polled every second or so, not for a hot path.
func (s *Server) Snapshot() []AppSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneGone(time.Now())
	byApp := make(map[string]*AppSnapshot)
	get := func(name string) *AppSnapshot {
		as := byApp[name]
		if as == nil {
			as = &AppSnapshot{App: name, Nodes: []NodeSnapshot{}, Shared: map[string]int16{}, Gone: []GoneNode{}}
			byApp[name] = as
		}
		return as
	}
	for name, a := range s.apps {
		as := get(name)
		as.Guests = len(a.guests)
		for _, e := range a.nodes {
			as.Nodes = append(as.Nodes, NodeSnapshot{
				Addr: e.addr, Incarnation: fmt.Sprintf("%016x", e.inc), Type: e.info.Type, Role: e.info.Role,
				Status: e.status().String(), EndPoint: e.info.EndPoint, Values: jsonSafe(decodeValues(e.info.Values)),
				LastSeenMs: (now - e.lastSeen) / int64(time.Millisecond),
				Stats:      s.statsOf(name, e.addr, e.inc, now),
			})
		}
		for k, v := range a.keys {
			as.Shared[k] = v.val
		}
	}
	for i := len(s.nstats.gone) - 1; i >= 0; i-- {
		g := s.nstats.gone[i]
		as := get(g.App)
		as.Gone = append(as.Gone, g)
	}
	out := make([]AppSnapshot, 0, len(byApp))
	for _, as := range byApp {
		slices.SortFunc(as.Nodes, func(x, y NodeSnapshot) int {
			if x.Type != y.Type {
				if x.Type < y.Type {
					return -1
				}
				return 1
			}
			if x.Addr < y.Addr {
				return -1
			}
			if x.Addr > y.Addr {
				return 1
			}
			return 0
		})
		out = append(out, *as)
	}
	slices.SortFunc(out, func(x, y AppSnapshot) int {
		switch {
		case x.App < y.App:
			return -1
		case x.App > y.App:
			return 1
		}
		return 0
	})
	return out
}

// jsonSafe returns values if encoding/json can encode them, else a copy
// with every value that cannot be encoded replaced by its fmt form.
func jsonSafe(values map[string]interface{}) map[string]interface{} {
	if values == nil {
		return map[string]interface{}{}
	}
	if _, err := json.Marshal(values); err == nil {
		return values
	}
	out := make(map[string]interface{}, len(values))
	for k, v := range values {
		if _, err := json.Marshal(v); err != nil {
			v = fmt.Sprint(v)
		}
		out[k] = v
	}
	return out
}
