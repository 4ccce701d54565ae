package admin

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/internal/version"
	"github.com/marsmesh/marsmesh/mesh"
)

// NodeOptions returns the collectors, readiness, status and routes of a
// node's admin endpoint. /readyz is ready while the node serves (Node.Serving:
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
		Routes: map[string]http.Handler{"GET /v1/owners": ownersHandler(n), "GET /v1/topics": topicsHandler(n)},
	}
}

// ownersHandler serves /v1/owners?type=T&key=K[&weight=V][&n=3]: the owner
// of key K among the online nodes of type T in this node's view
// (mesh.Owner, weighted by value V when given), the next n-1 in line, and
// how many keys this node holds.
func ownersHandler(n *mesh.Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		typ, key, weight := q.Get("type"), q.Get("key"), q.Get("weight")
		if !q.Has("type") || !q.Has("key") {
			http.Error(w, "want /v1/owners?type=T&key=K[&weight=V][&n=3]", http.StatusBadRequest)
			return
		}
		count := 3
		if v := q.Get("n"); v != "" {
			c, err := strconv.Atoi(v)
			if err != nil || c < 1 || c > 100 {
				http.Error(w, "n: want 1 to 100, got "+strconv.Quote(v), http.StatusBadRequest)
				return
			}
			count = c
		}
		var opts []mesh.OwnerOption
		if weight != "" {
			opts = append(opts, mesh.WeightedBy(weight))
		}
		owner, ok := n.Owner(typ, key, opts...)
		WriteJSON(w, map[string]any{
			"type":     typ,
			"key":      key,
			"weight":   weight,
			"owner":    owner, // "" when no node of the type is online
			"ok":       ok,
			"ranked":   n.Owners(typ, key, count, opts...),
			"online":   len(n.GetNodeAddressesByType(typ)),
			"self":     n.Addr,
			"selfOwns": ok && owner == n.Addr,
			"held":     n.HeldKeys(),
		})
	})
}

// topicsHandler serves /v1/topics: the node's pub-sub counters (with
// per-second rates since the previous request, over at least a second),
// its subscriptions with their delivered, dropped and pending counts, the
// topics it published to, and the other nodes' interest it routes by.
func topicsHandler(n *mesh.Node) http.Handler {
	var mu sync.Mutex
	var prev mesh.TopicStats
	var prevAt time.Time
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := n.TopicStats()
		now := time.Now()
		mu.Lock()
		rates := map[string]float64{}
		if !prevAt.IsZero() {
			sec := now.Sub(prevAt).Seconds()
			rates["published"] = float64(st.Published-prev.Published) / sec
			rates["delivered"] = float64(st.Delivered-prev.Delivered) / sec
			rates["dropped"] = float64(st.Dropped-prev.Dropped) / sec
		}
		if prevAt.IsZero() || now.Sub(prevAt) >= time.Second {
			prev, prevAt = st, now
		}
		mu.Unlock()
		subs := st.Subscriptions
		if subs == nil {
			subs = []mesh.SubscriptionStats{}
		}
		interest := st.Interest
		if interest == nil {
			interest = []mesh.NodeInterest{}
		}
		WriteJSON(w, map[string]any{
			"self":          n.Addr,
			"published":     st.Published,
			"delivered":     st.Delivered,
			"dropped":       st.Dropped,
			"slowConsumers": st.SlowConsumers,
			"retries":       st.Retries,
			"refused":       st.Refused,
			"rates":         rates, // per second since the previous request; empty on the first
			"byTopic":       st.PublishedByTopic,
			"subscriptions": subs,
			"interest":      interest,
		})
	})
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
