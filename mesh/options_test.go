package mesh

import (
	"sync"
	"testing"
	"time"
)

// TestStrictCheckForExternal: with the check on, messages from a sender
// MARS does not list (a guest here) are dropped; listed senders get through.
func TestStrictCheckForExternal(t *testing.T) {
	c := newCluster(t, 1)
	strictCfg := c.cfg
	strictCfg.StrictCheckForExternal = true
	cs := &cluster{t: t, mars: c.mars, cfg: strictCfg}
	strict := cs.add()
	t.Cleanup(func() { strict.Shutdown() })
	member := c.nodes[0]
	guest := c.add(AsGuest())
	c.waitListed(2) // the guest is not listed
	rec := newRecorder()
	rec.register(t, strict, 40)
	eventually(t, 3*time.Second, func() bool { return strict.GetNode(member.GetMyEndPoint()) != nil }, "strict node lists the member")
	if err := guest.Send(40, strict.GetMyEndPoint(), map[string]interface{}{"from": "guest"}); err != nil {
		t.Fatal(err)
	}
	if err := member.Send(40, strict.GetMyEndPoint(), map[string]interface{}{"from": "member"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() bool { return strict.StrictDrops() == 1 && rec.count(strict.GetMyEndPoint()) == 1 }, "the guest's message is dropped, the member's delivered")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := GetString(rec.got[strict.GetMyEndPoint()][0], "from"); got != "member" {
		t.Fatalf("delivered message from %q", got)
	}
	// Health checks are exempt, so probes from guests work.
	if err := guest.HealthCheck(t.Context(), strict.GetMyEndPoint()); err != nil {
		t.Fatalf("health check from a guest: %v", err)
	}
}

// TestSendInterval: with sendInterval set, one-way messages are held and
// flushed together, still in order and all delivered.
func TestSendInterval(t *testing.T) {
	c := newCluster(t, 1)
	bufCfg := c.cfg
	bufCfg.SendInterval = 50
	cb := &cluster{t: t, mars: c.mars, cfg: bufCfg}
	sender := cb.add()
	t.Cleanup(func() { sender.Shutdown() })
	recv := c.nodes[0]
	var mu sync.Mutex
	var got []int
	var first time.Time
	recv.HandleCommand(50, func(m map[string]interface{}) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		got = append(got, GetInt(m, "i"))
		return nil, nil
	})
	start := time.Now()
	for i := range 500 {
		reliable := i%10 != 0
		var err error
		if reliable {
			err = sender.Send(50, recv.GetMyEndPoint(), map[string]interface{}{"i": i})
		} else {
			err = sender.USend(50, recv.GetMyEndPoint(), map[string]interface{}{"i": i})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 450 }, "reliable messages arrive")
	mu.Lock()
	defer mu.Unlock()
	prev := -1
	for _, i := range got {
		if i%10 != 0 {
			if i < prev {
				t.Fatalf("reliable message %d after %d", i, prev)
			}
			prev = i
		}
	}
	if delay := first.Sub(start); delay < 10*time.Millisecond {
		t.Logf("first message after %v (buffered until the first flush)", delay)
	}
}

// TestPackageLevelAPI runs the default node through Setup, with handlers
// and settings registered before it.
func TestPackageLevelAPI(t *testing.T) {
	c := newCluster(t, 1)
	t.Setenv("DIARKIS_MARS_PORT", c.cfg.MarsPort)
	t.Setenv("DIARKIS_PORT", "0")
	if _, err := SendRPC(1, c.nodes[0].GetMyEndPoint(), nil); !IsUnhealthyError(err) {
		t.Fatalf("SendRPC before Setup: %v", err)
	}
	if err := Send(1, c.nodes[0].GetMyEndPoint(), nil); !IsSendError(err) {
		t.Fatalf("Send before Setup: %v", err)
	}
	if GetNodeAddresses(nil) != nil || IsPartOfCluster() {
		t.Fatal("lookups before Setup")
	}
	// The package-level handler table lives as long as the process, so
	// with -count=2 the second run finds the handler already there.
	if !HandleRPC(60, func(d []byte, _ string) ([]byte, error) { return append([]byte("pong:"), d...), nil }) && !IsCommandDuplicate(60) {
		t.Fatal("HandleRPC before Setup refused")
	}
	SetNodeType("default-node")
	ready := make(chan struct{})
	OnReady(func() { close(ready) })
	if err := Setup(""); err != nil {
		t.Fatal(err)
	}
	defer Shutdown()
	if err := Setup(""); err == nil {
		t.Fatal("second Setup accepted")
	}
	<-ready
	if GetNodeType() != "default-node" || Default() == nil {
		t.Fatalf("type %q", GetNodeType())
	}
	eventually(t, 3*time.Second, func() bool { return len(GetNodeAddresses(nil)) == 2 }, "the default node lists both")
	resp, err := c.nodes[0].SendRPC(60, GetMyEndPoint(), []byte("x"))
	if err != nil || string(resp) != "pong:x" {
		t.Fatalf("RPC to the default node: %q %v", resp, err)
	}
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
}
