package mars

import (
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// The key-value store and leases for the admin endpoint, the dashboard
// and the metrics.

// KVAppSnapshot is one app's key-value store and leases.
type KVAppSnapshot struct {
	App       string          `json:"app"`
	Keys      int             `json:"keys"`  // keys the app holds
	Bytes     int             `json:"bytes"` // bytes of keys and values
	Rev       int64           `json:"rev"`   // the app's latest change
	Entries   []KVKeySnapshot `json:"entries"`
	Truncated bool            `json:"truncated"` // more keys under the prefix than listed
	Leases    []LeaseSnapshot `json:"leases"`
}

// KVKeySnapshot is one key.
type KVKeySnapshot struct {
	Key  string `json:"key"`
	Rev  int64  `json:"rev"`
	Size int    `json:"size"`
	// Value is the start of the value (up to 64 bytes) when it is UTF-8
	// text, else empty.
	Value string `json:"value"`
	// TTLMs is the time left before the key expires (-1: no TTL, or the
	// store keeps it).
	TTLMs int64 `json:"ttlMs"`
}

// LeaseSnapshot is one lease.
type LeaseSnapshot struct {
	Key     string    `json:"key"`
	Holder  string    `json:"holder"`
	Token   int64     `json:"token"`
	TTLMs   int64     `json:"ttlMs"`
	Granted time.Time `json:"granted"`
	// LeftMs is the time left before MARS may grant it again unless
	// renewed (-1 with a Store: the store's clock decides).
	LeftMs int64 `json:"leftMs"`
}

// KVSnapshot copies the keys under prefix (at most limit per app, sorted)
// and the leases of every app, sorted by app name.
func (s *Server) KVSnapshot(prefix string, limit int) []KVAppSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]KVAppSnapshot, 0, len(s.kv.apps))
	for name, a := range s.kv.apps {
		if a.keys.Len() == 0 && len(a.leases) == 0 {
			continue
		}
		as := KVAppSnapshot{App: name, Keys: a.keys.Len(), Bytes: a.bytes, Rev: a.lastRev,
			Entries: []KVKeySnapshot{}, Leases: []LeaseSnapshot{}}
		a.keys.AscendGreaterOrEqual(&kvItem{key: prefix}, func(it *kvItem) bool {
			if !strings.HasPrefix(it.key, prefix) {
				return false
			}
			if len(as.Entries) >= limit {
				as.Truncated = true
				return false
			}
			ks := KVKeySnapshot{Key: it.key, Rev: it.rev, Size: len(it.value), TTLMs: -1}
			if v := it.value[:min(len(it.value), 64)]; utf8.Valid(v) {
				ks.Value = string(v)
			}
			if it.expires != 0 {
				ks.TTLMs = max(it.expires-now, 0) / int64(time.Millisecond)
			}
			as.Entries = append(as.Entries, ks)
			return true
		})
		for _, l := range a.leases {
			ls := LeaseSnapshot{Key: l.key, Holder: l.holder, Token: l.token, TTLMs: l.ttl.Milliseconds(), Granted: l.granted, LeftMs: -1}
			if s.st == nil {
				ls.LeftMs = max(l.expires-now, 0) / int64(time.Millisecond)
			}
			as.Leases = append(as.Leases, ls)
		}
		sort.Slice(as.Leases, func(i, j int) bool { return as.Leases[i].Key < as.Leases[j].Key })
		out = append(out, as)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

var (
	descKVKeys   = prometheus.NewDesc("marsmesh_mars_kv_keys", "Keys of the key-value store, by app.", []string{"app"}, nil)
	descKVBytes  = prometheus.NewDesc("marsmesh_mars_kv_bytes", "Bytes of keys and values of the key-value store, by app.", []string{"app"}, nil)
	descLeases   = prometheus.NewDesc("marsmesh_mars_leases", "Leases held, by app.", []string{"app"}, nil)
	descKVOps    = prometheus.NewDesc("marsmesh_mars_kv_requests_total", "Key-value and lease requests MARS handled, by operation (resends included).", []string{"op"}, nil)
	descKVConfl  = prometheus.NewDesc("marsmesh_mars_kv_conflicts_total", "Compare-and-swap writes that found another revision.", nil, nil)
	descKVRefuse = prometheus.NewDesc("marsmesh_mars_kv_refused_total", "Key-value requests MARS refused as malformed or invalid.", nil, nil)
)

var kvOpNames = [...]string{kvPut: "put", kvGet: "get", kvDel: "delete", kvList: "list", kvWatch: "watch",
	kvClaim: "claim", kvRenew: "renew", kvRelease: "release", kvLeases: "leases"}

func kvDescribe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKVKeys, descKVBytes, descLeases, descKVOps, descKVConfl, descKVRefuse} {
		ch <- d
	}
}

func (s *Server) kvCollect(ch chan<- prometheus.Metric) {
	for op := kvPut; op <= kvLeases; op++ {
		ch <- prometheus.MustNewConstMetric(descKVOps, prometheus.CounterValue, float64(s.kv.ops[op].Load()), kvOpNames[op])
	}
	ch <- prometheus.MustNewConstMetric(descKVConfl, prometheus.CounterValue, float64(s.kv.conflicts.Load()))
	ch <- prometheus.MustNewConstMetric(descKVRefuse, prometheus.CounterValue, float64(s.kv.refused.Load()))
	type counts struct {
		app                 string
		keys, bytes, leases int
	}
	s.mu.Lock()
	var cs []counts
	for name, a := range s.kv.apps {
		cs = append(cs, counts{name, a.keys.Len(), a.bytes, len(a.leases)})
	}
	s.mu.Unlock()
	for _, c := range cs {
		ch <- prometheus.MustNewConstMetric(descKVKeys, prometheus.GaugeValue, float64(c.keys), c.app)
		ch <- prometheus.MustNewConstMetric(descKVBytes, prometheus.GaugeValue, float64(c.bytes), c.app)
		ch <- prometheus.MustNewConstMetric(descLeases, prometheus.GaugeValue, float64(c.leases), c.app)
	}
}
