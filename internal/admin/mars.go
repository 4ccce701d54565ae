package admin

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marsmesh/marsmesh/internal/version"
	"github.com/marsmesh/marsmesh/mars"
)

// MarsOptions returns the collectors, status and routes of MARS's admin
// endpoint: /v1/nodes, /v1/shared, /v1/kv and /v1/leases (all apps, or
// one with ?app=NAME; the default namespace is ?app=), /v1/status, and the
// dashboard at /. /v1/kv lists the keys under ?prefix= (default all), at
// most ?limit= per app (default 1,000), with the start of text values.
func MarsOptions(srv *mars.Server, addr string) Options {
	started := time.Now()
	return Options{
		Addr:       addr,
		Collectors: []prometheus.Collector{srv.Collector()},
		Status: func() any {
			st := srv.Stats()
			return map[string]any{
				"role":        "mars",
				"addr":        srv.Addr().String(),
				"incarnation": fmt.Sprintf("%016x", srv.Incarnation()),
				"version":     version.Get(),
				"started":     started.UTC().Format(time.RFC3339),
				"uptimeSec":   int64(time.Since(started).Seconds()),
				"traffic": map[string]uint64{
					"reports": st.Reports, "leaves": st.Leaves, "bad": st.Bad, "syncs": st.Syncs,
					"syncBytes": st.SyncBytes, "skipped": st.Skipped, "ignored": st.Ignored,
				},
			}
		},
		Routes: map[string]http.Handler{
			"GET /v1/nodes": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				type app struct {
					App    string              `json:"app"`
					Nodes  []mars.NodeSnapshot `json:"nodes"`
					Guests int                 `json:"guests"`
					Gone   []mars.GoneNode     `json:"gone"`
				}
				out := []app{}
				for _, a := range filterApps(srv.Snapshot(), r) {
					out = append(out, app{a.App, a.Nodes, a.Guests, a.Gone})
				}
				WriteJSON(w, map[string]any{"apps": out})
			}),
			"GET /v1/shared": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				type app struct {
					App    string           `json:"app"`
					Shared map[string]int16 `json:"shared"`
				}
				out := []app{}
				for _, a := range filterApps(srv.Snapshot(), r) {
					out = append(out, app{a.App, a.Shared})
				}
				WriteJSON(w, map[string]any{"apps": out})
			}),
			"GET /v1/kv": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
				if err != nil || limit <= 0 {
					limit = 1000
				}
				type app struct {
					App       string               `json:"app"`
					Keys      int                  `json:"keys"`
					Bytes     int                  `json:"bytes"`
					Rev       int64                `json:"rev"`
					Entries   []mars.KVKeySnapshot `json:"entries"`
					Truncated bool                 `json:"truncated"`
				}
				out := []app{}
				for _, a := range filterKV(srv.KVSnapshot(r.URL.Query().Get("prefix"), limit), r) {
					out = append(out, app{a.App, a.Keys, a.Bytes, a.Rev, a.Entries, a.Truncated})
				}
				WriteJSON(w, map[string]any{"apps": out})
			}),
			"GET /v1/leases": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				type app struct {
					App    string               `json:"app"`
					Leases []mars.LeaseSnapshot `json:"leases"`
				}
				out := []app{}
				for _, a := range filterKV(srv.KVSnapshot("", 0), r) {
					out = append(out, app{a.App, a.Leases})
				}
				WriteJSON(w, map[string]any{"apps": out})
			}),
			"GET /{$}":           dashboardPage(),
			"GET /dashboard.js":  dashboardAsset("dashboard.js", "text/javascript; charset=utf-8"),
			"GET /dashboard.css": dashboardAsset("dashboard.css", "text/css; charset=utf-8"),
		},
	}
}

// filterKV keeps the app named by ?app= when the query has it.
func filterKV(apps []mars.KVAppSnapshot, r *http.Request) []mars.KVAppSnapshot {
	q := r.URL.Query()
	if !q.Has("app") {
		return apps
	}
	for _, a := range apps {
		if a.App == q.Get("app") {
			return []mars.KVAppSnapshot{a}
		}
	}
	return nil
}

// filterApps keeps the app named by ?app= when the query has it.
func filterApps(apps []mars.AppSnapshot, r *http.Request) []mars.AppSnapshot {
	q := r.URL.Query()
	if !q.Has("app") {
		return apps
	}
	name := q.Get("app")
	for _, a := range apps {
		if a.App == name {
			return []mars.AppSnapshot{a}
		}
	}
	return nil
}
