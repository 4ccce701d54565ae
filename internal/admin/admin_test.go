package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/leaktest"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testCluster is a MARS and two nodes, each with its admin endpoint on
// 127.0.0.1.
type testCluster struct {
	srv        *mars.Server
	a, b       *mesh.Node
	marsAdm    *Server
	aAdm, bAdm *Server
	marsURL    string
	aURL, bURL string
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{OfflineAfter: time.Second, RemoveAfter: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{srv: srv}
	t.Cleanup(c.close)
	cfg := config.Default()
	cfg.Port = "0"
	cfg.MarsPort = fmt.Sprint(srv.Addr().Port())
	cfg.RetryInterval, cfg.RetryTimeout = 200, 1000
	newNode := func(typ string) *mesh.Node {
		n, err := mesh.New(cfg, mesh.WithType(typ), mesh.WithRole("UDP"), mesh.WithLogger(quiet),
			mesh.WithSyncInterval(100*time.Millisecond), mesh.WithValues(map[string]interface{}{"cap": 10}))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	c.a, c.b = newNode("game"), newNode("match")
	start := func(o Options) (*Server, string) {
		o.Logger = quiet
		s, err := Start(o)
		if err != nil {
			t.Fatal(err)
		}
		return s, "http://" + s.Addr()
	}
	c.marsAdm, c.marsURL = start(MarsOptions(srv, "127.0.0.1:0"))
	aOpts := NodeOptions(c.a, "127.0.0.1:0", cfg.MarsAddr())
	aOpts.Pprof = true // the others keep the default: off
	c.aAdm, c.aURL = start(aOpts)
	c.bAdm, c.bURL = start(NodeOptions(c.b, "127.0.0.1:0", cfg.MarsAddr()))
	for _, n := range []*mesh.Node{c.a, c.b} {
		select {
		case <-n.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("node did not sync with MARS")
		}
	}
	return c
}

func (c *testCluster) close() {
	for _, s := range []*Server{c.marsAdm, c.aAdm, c.bAdm} {
		if s != nil {
			s.Close()
		}
	}
	for _, n := range []*mesh.Node{c.a, c.b} {
		if n != nil {
			n.Shutdown()
		}
	}
	c.srv.Close()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load sends b -> a: RPCs with every outcome, one-way messages, a fan-out,
// and sets a shared key.
func (c *testCluster) load(t *testing.T) {
	t.Helper()
	c.a.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	c.a.HandleRPC(2, func([]byte, string) ([]byte, error) { return nil, errors.New("refused") })
	c.a.HandleRPCWithContext(3, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	got := make(chan struct{}, 64)
	c.a.SetCommandHandler(10, func([]byte, string) ([]byte, error) { got <- struct{}{}; return nil, nil })
	for i := range 5 {
		if _, err := c.b.SendRPC(1, c.a.Addr, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.b.SendRPC(2, c.a.Addr, nil); !mesh.IsRequestError(err) {
		t.Fatalf("RPC 2: %v, want a remote error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := c.b.SendRPCWithContext(ctx, 3, c.a.Addr, nil)
	cancel()
	if !mesh.IsRequestTimeoutError(err) {
		t.Fatalf("RPC 3: %v, want a timeout", err)
	}
	if _, err := c.b.SendRPC(1, "not an address", nil); !mesh.IsSendError(err) {
		t.Fatalf("RPC to a bad address: %v, want a send error", err)
	}
	for range 5 {
		if err := c.b.Send(10, c.a.Addr, []byte("hi")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.b.SendMany(10, []string{c.a.Addr}, []byte("all"), 2); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 5000) // split into several datagrams
	if err := c.b.USend(10, c.a.Addr, big); err != nil {
		t.Fatal(err)
	}
	for range 6 { // the USend may be lost
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("messages not delivered")
		}
	}
	// A node that never answers: the handshake goes unanswered, a send error.
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = c.b.SendRPCWithContext(ctx, 1, "127.0.0.1:9", nil)
	cancel()
	if !mesh.IsSendError(err) {
		t.Fatalf("RPC to a silent address: %v, want a send error", err)
	}
	if !c.b.SetSharedData("rooms", 7) {
		t.Fatal("SetSharedData refused")
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("%s/metrics: HTTP %d", url, code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s/metrics does not parse: %v", url, err)
	}
	return fams
}

// value sums the samples of family name whose labels include want
// (label=value pairs); a histogram counts its observations.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	sum := 0.0
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, true
}

type check struct {
	name    string
	labels  []string
	nonZero bool
}

func expect(t *testing.T, who string, fams map[string]*dto.MetricFamily, checks []check) {
	t.Helper()
	for _, c := range checks {
		v, ok := value(fams, c.name, c.labels...)
		switch {
		case !ok:
			t.Errorf("%s: family %s missing", who, c.name)
		case c.nonZero && v == 0:
			t.Errorf("%s: %s%v = 0 after the load", who, c.name, c.labels)
		}
	}
}

func TestMetricsAfterLoad(t *testing.T) {
	c := startCluster(t)
	c.load(t)
	// MARS sees the shared key, both nodes and a stats record of each.
	eventually(t, "MARS to hold the shared key and node stats", func() bool {
		apps := c.srv.Snapshot()
		if len(apps) != 1 || apps[0].Shared["rooms"] != 7 || len(apps[0].Nodes) != 2 {
			return false
		}
		for _, n := range apps[0].Nodes {
			if n.Stats == nil {
				return false
			}
		}
		return true
	})

	eventually(t, "the silent peer declared dead", func() bool {
		v, _ := value(scrape(t, c.bURL), "marsmesh_transport_peers_dead_total")
		return v > 0
	})
	caller := scrape(t, c.bURL)
	expect(t, "caller node", caller, []check{
		{"marsmesh_rpcs_total", []string{"cmd", "1", "outcome", "ok"}, true},
		{"marsmesh_rpcs_total", []string{"cmd", "2", "outcome", "remote_error"}, true},
		{"marsmesh_rpcs_total", []string{"cmd", "3", "outcome", "timeout"}, true},
		{"marsmesh_rpcs_total", []string{"cmd", "1", "outcome", "send_error"}, true},
		{"marsmesh_rpc_duration_seconds", []string{"cmd", "1"}, true},
		{"marsmesh_messages_sent_total", []string{"cmd", "10", "outcome", "ok"}, true},
		{"marsmesh_fanout_sends_total", nil, true},
		{"marsmesh_fanout_relay_takeovers_total", nil, false},
		{"marsmesh_backpressure_command_drops_total", nil, false},
		{"marsmesh_transport_datagrams_sent_total", nil, true},
		{"marsmesh_transport_datagrams_received_total", nil, true},
		{"marsmesh_transport_sessions", nil, true},
		{"marsmesh_transport_bad_datagrams_total", nil, false},
		{"marsmesh_transport_sent_bytes_total", nil, true},
		{"marsmesh_transport_received_bytes_total", nil, true},
		{"marsmesh_transport_unreliable_splits_total", nil, true},
		{"marsmesh_transport_retransmissions_total", nil, false},
		{"marsmesh_transport_reassembly_drops_total", nil, false},
		{"marsmesh_transport_peers_dead_total", nil, true},
		{"marsmesh_backpressure_transport_pauses_total", nil, false},
		{"marsmesh_backpressure_slow_consumer_events_total", nil, false},
		{"marsmesh_backpressure_inbound_drops_total", nil, false},
		{"marsmesh_backpressure_reply_drops_total", nil, false},
		{"marsmesh_node_part_of_cluster", nil, true},
		{"marsmesh_owner_lookups_total", nil, false},
		{"marsmesh_owner_retries_total", nil, false},
		{"marsmesh_owner_holds", nil, false},
		{"marsmesh_owner_handoffs_total", nil, false},
		{"marsmesh_build_info", nil, true},
		{"go_goroutines", nil, true},
	})
	callee := scrape(t, c.aURL)
	expect(t, "callee node", callee, []check{
		{"marsmesh_messages_received_total", []string{"cmd", "10"}, true},
		{"marsmesh_fanout_deliveries_total", nil, true},
		{"marsmesh_transport_datagrams_received_total", nil, true},
	})
	if v, _ := value(callee, "marsmesh_messages_received_total", "cmd", "10"); v < 6 || v > 7 {
		t.Errorf("callee received %v messages of command 10, want 6 or 7 (5 Send, 1 SendMany, 1 USend that may be lost)", v)
	}
	if v, _ := value(caller, "marsmesh_rpcs_total", "cmd", "1"); v != 7 {
		t.Errorf("caller counted %v RPCs of command 1, want 7", v)
	}

	m := scrape(t, c.marsURL)
	expect(t, "MARS", m, []check{
		{"marsmesh_mars_nodes", []string{"app", "", "status", "online"}, true},
		{"marsmesh_mars_shared_keys", []string{"app", ""}, true},
		{"marsmesh_mars_sync_bytes_sent_total", nil, true},
		{"marsmesh_mars_sync_bytes_received_total", nil, true},
		{"marsmesh_mars_reports_total", nil, true},
		{"marsmesh_mars_syncs_sent_total", nil, true},
		{"marsmesh_mars_node_stats_received_total", nil, true},
		{"marsmesh_mars_backpressure_skipped_replies_total", nil, false},
		{"marsmesh_mars_apps", nil, true},
		{"marsmesh_transport_datagrams_received_total", nil, true},
		{"marsmesh_transport_sessions", nil, true},
	})
	if v, _ := value(m, "marsmesh_mars_nodes", "status", "online"); v != 2 {
		t.Errorf("MARS lists %v nodes online, want 2", v)
	}
}

func TestEndpoints(t *testing.T) {
	c := startCluster(t)
	c.load(t)
	for _, tc := range []struct {
		url, want string
		code      int
	}{
		{c.aURL + "/healthz", "ok", 200},
		{c.marsURL + "/healthz", "ok", 200},
		{c.marsURL + "/readyz", "ready", 200},
		{c.aURL + "/debug/pprof/", "goroutine", 200},
		{c.marsURL + "/debug/pprof/", "404", 404},
		{c.bURL + "/debug/pprof/", "404", 404},
		{c.marsURL + "/", "<title>marsmesh cluster</title>", 200},
		{c.marsURL + "/dashboard.js", "/v1/nodes", 200},
		{c.marsURL + "/dashboard.css", "--online", 200},
		{c.marsURL + "/nothing", "404", 404},
		{c.aURL + "/v1/nodes", "404", 404}, // a node has no cluster listing
	} {
		code, body := get(t, tc.url)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: HTTP %d, body %.80q; want %d with %q", tc.url, code, body, tc.code, tc.want)
		}
	}
	eventually(t, "node a ready", func() bool { code, _ := get(t, c.aURL+"/readyz"); return code == 200 })

	var st map[string]any
	_, body := get(t, c.aURL+"/v1/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st["role"] != "node" || st["addr"] != c.a.Addr || st["type"] != "game" || st["partOfCluster"] != true {
		t.Errorf("node /v1/status = %s", body)
	}
	var ns struct {
		Mars struct {
			InUse    string               `json:"inUse"`
			Replicas []mars.ReplicaStatus `json:"replicas"`
			InTouch  bool                 `json:"inTouch"`
		} `json:"mars"`
		Traffic map[string]uint64 `json:"traffic"`
		Version map[string]any    `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &ns); err != nil {
		t.Fatal(err)
	}
	if m := ns.Mars; m.InUse != c.srv.Addr().String() || !m.InTouch || len(m.Replicas) != 1 ||
		m.Replicas[0].State != mars.ReplicaInUse || m.Replicas[0].Addr != m.InUse {
		t.Errorf("node /v1/status mars = %+v", m)
	}
	if _, ok := ns.Traffic["messagesSent"]; !ok || ns.Version["revision"] == nil {
		t.Errorf("node /v1/status traffic %v version %v: want camelCase keys", ns.Traffic, ns.Version)
	}
	_, body = get(t, c.marsURL+"/v1/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil || st["role"] != "mars" {
		t.Errorf("MARS /v1/status = %s (%v)", body, err)
	}

	var nodes struct {
		Apps []struct {
			App   string              `json:"app"`
			Nodes []mars.NodeSnapshot `json:"nodes"`
		} `json:"apps"`
	}
	eventually(t, "rates of both nodes in /v1/nodes", func() bool {
		_, body := get(t, c.marsURL+"/v1/nodes?app=")
		if err := json.Unmarshal([]byte(body), &nodes); err != nil {
			t.Fatal(err)
		}
		if len(nodes.Apps) != 1 || len(nodes.Apps[0].Nodes) != 2 {
			return false
		}
		for _, n := range nodes.Apps[0].Nodes {
			if n.Stats == nil || n.Stats.Rates == nil {
				return false
			}
		}
		return true
	})
	for _, n := range nodes.Apps[0].Nodes {
		if n.Status != "online" || n.Role != "UDP" || n.Values["cap"] == nil {
			t.Errorf("/v1/nodes lists %+v", n)
		}
		if n.Addr == c.b.Addr && n.Stats.RPCs < 9 {
			t.Errorf("/v1/nodes: the caller reports %d RPCs, want at least 9", n.Stats.RPCs)
		}
	}
	if _, body := get(t, c.marsURL+"/v1/nodes?app=other"); !strings.Contains(body, `"apps": []`) {
		t.Errorf("/v1/nodes?app=other = %s, want no apps", body)
	}
	eventually(t, "the shared key in /v1/shared", func() bool {
		_, body := get(t, c.marsURL+"/v1/shared")
		return strings.Contains(body, `"rooms": 7`)
	})

	// A node that stops leaves: gone from /v1/nodes at once, in the gone list.
	c.aAdm.Close()
	c.a.Shutdown()
	eventually(t, "node a gone from /v1/nodes", func() bool {
		_, body := get(t, c.marsURL+"/v1/nodes?app=")
		if err := json.Unmarshal([]byte(body), &nodes); err != nil {
			t.Fatal(err)
		}
		return len(nodes.Apps) == 1 && !slices.ContainsFunc(nodes.Apps[0].Nodes, func(n mars.NodeSnapshot) bool { return n.Addr == c.a.Addr })
	})
	eventually(t, "node a in the gone list", func() bool {
		for _, a := range c.srv.Snapshot() {
			for _, g := range a.Gone {
				if g.Addr == c.a.Addr && g.Type == "game" {
					return true
				}
			}
		}
		return false
	})
}

func TestNodeNotReadyWithoutMars(t *testing.T) {
	cfg := config.Default()
	cfg.Port = "0"
	cfg.MarsPort = "1" // nothing listens there
	n, err := mesh.New(cfg, mesh.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	o := NodeOptions(n, "127.0.0.1:0", cfg.MarsAddr())
	o.Logger = quiet
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if code, body := get(t, "http://"+s.Addr()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "MARS") {
		t.Errorf("/readyz without MARS: HTTP %d %q, want 503", code, body)
	}
	if code, _ := get(t, "http://"+s.Addr()+"/healthz"); code != 200 {
		t.Errorf("/healthz: HTTP %d", code)
	}
}

func TestStartRefusesBadAddress(t *testing.T) {
	for _, addr := range []string{"", "9090", "127.0.0.1:99999"} {
		if s, err := Start(Options{Addr: addr, Logger: quiet}); err == nil {
			s.Close()
			t.Errorf("Start(%q) succeeded", addr)
		} else if !errors.Is(err, ErrAddress) {
			t.Errorf("Start(%q): %v, want ErrAddress", addr, err)
		}
	}
}

// /v1/owners names a key's owner as mesh.Owner does, weighted or not, and
// refuses a query without a type and key.
func TestOwnersEndpoint(t *testing.T) {
	c := startCluster(t)
	eventually(t, "b lists a online", func() bool { return slices.Contains(c.b.GetNodeAddressesByType("game"), c.a.Addr) })
	type owners struct {
		Owner    string   `json:"owner"`
		OK       bool     `json:"ok"`
		Ranked   []string `json:"ranked"`
		Online   int      `json:"online"`
		SelfOwns bool     `json:"selfOwns"`
		Held     int      `json:"held"`
	}
	query := func(base, q string) owners {
		t.Helper()
		code, body := get(t, base+"/v1/owners?"+q)
		if code != http.StatusOK {
			t.Fatalf("/v1/owners?%s: %d %s", q, code, body)
		}
		var o owners
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			t.Fatalf("/v1/owners?%s: %v in %s", q, err, body)
		}
		return o
	}
	o := query(c.bURL, "type=game&key=room/1")
	if !o.OK || o.Owner != c.a.Addr || o.SelfOwns || o.Online != 1 || !slices.Equal(o.Ranked, []string{c.a.Addr}) {
		t.Fatalf("owner of room/1 among the game nodes, as b sees it: %+v", o)
	}
	release := c.a.Hold("game", "room/1", nil)
	defer release()
	if o := query(c.aURL, "type=game&key=room/1&weight=cap&n=5"); !o.OK || !o.SelfOwns || o.Held != 1 {
		t.Fatalf("weighted by cap, as a sees it: %+v", o)
	}
	if o := query(c.bURL, "type=game&key=room/1&weight=nosuchvalue"); o.OK || o.Owner != "" || len(o.Ranked) != 0 {
		t.Fatalf("weighted by a value no node has: %+v", o)
	}
	for _, q := range []string{"type=game", "key=room/1", "type=game&key=k&n=0", "type=game&key=k&n=x"} {
		if code, body := get(t, c.bURL+"/v1/owners?"+q); code != http.StatusBadRequest {
			t.Errorf("/v1/owners?%s: %d %s, want 400", q, code, body)
		}
	}
}

// /v1/topics lists a node's subscriptions with their counts, what it
// published, and the interest of the other nodes it routes by.
func TestTopicsEndpoint(t *testing.T) {
	c := startCluster(t)
	eventually(t, "a and b list each other online", func() bool {
		return slices.Contains(c.b.GetNodeAddressesByType("game"), c.a.Addr) && slices.Contains(c.a.GetNodeAddressesByType("match"), c.b.Addr)
	})
	got := make(chan struct{}, 10)
	if _, err := c.b.Subscribe("chat.*", func(*mesh.Message) { got <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.b.QueueSubscribe("jobs.>", "workers", func(*mesh.Message) {}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := c.a.Publish(context.Background(), "chat.eu", []byte("hi")); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		<-got
	}
	type topics struct {
		Published     uint64                   `json:"published"`
		Delivered     uint64                   `json:"delivered"`
		ByTopic       map[string]uint64        `json:"byTopic"`
		Subscriptions []mesh.SubscriptionStats `json:"subscriptions"`
		Interest      []mesh.NodeInterest      `json:"interest"`
	}
	query := func(base string) topics {
		t.Helper()
		code, body := get(t, base+"/v1/topics")
		if code != http.StatusOK {
			t.Fatalf("/v1/topics: %d %s", code, body)
		}
		var o topics
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			t.Fatalf("/v1/topics: %v in %s", err, body)
		}
		return o
	}
	a := query(c.aURL)
	if a.Published != 3 || a.ByTopic["chat.eu"] != 3 || len(a.Interest) != 1 || a.Interest[0].Addr != c.b.Addr ||
		!slices.Equal(a.Interest[0].Patterns, []string{"chat.*", "jobs.> queue=workers"}) {
		t.Errorf("a's topics: %+v", a)
	}
	b := query(c.bURL)
	if b.Delivered != 3 || len(b.Subscriptions) != 2 || b.Subscriptions[0].Pattern != "chat.*" || b.Subscriptions[0].Delivered != 3 ||
		b.Subscriptions[1].Group != "workers" {
		t.Errorf("b's topics: %+v", b)
	}
}
