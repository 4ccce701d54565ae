package mesh

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/testport"
	"github.com/marsmesh/marsmesh/rudp"
)

// TestE2EKeyedCrashRestart: a keyed cluster of processes (mars-server and
// node processes with the default keepalive, 750 ms). Two peers wait in
// calls to a node when it is killed with SIGKILL, and a new process starts
// on its port at once. Both calls fail with a send error (not a timeout),
// the new process never sees them, and each peer's next call reaches the
// new process. How long each step took is logged (issue 24's goal, under
// 100 ms after the restart, is no assertion here).
func TestE2EKeyedCrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with processes; skipped with -short")
	}
	k, err := rudp.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := config.EncodeKey(k)
	marsCfg := filepath.Join(t.TempDir(), "mars.json")
	if err := os.WriteFile(marsCfg, []byte(`{"meshKey": "`+key+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	mp := startMarsServer(t, buildMarsServer(t), "-config", marsCfg)
	cfgPath := e2eConfig(t)
	start := func(name, port string) *procNode {
		t.Helper()
		p, err := startProcNode(t, name, mp.port, cfgPath, "game", "DIARKIS_MESH_KEY="+key,
			"DIARKIS_RETRY_INTERVAL=1000", "DIARKIS_RETRY_TIMEOUT=3000", "DIARKIS_PORT="+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.stop)
		return p
	}
	// The victim's port comes from below the ephemeral range: while it is
	// down, no socket bound to port 0 elsewhere can be handed it.
	victim := start("victim", strconv.Itoa(testport.Free(t)))
	peers := []*procNode{start("peer0", "0"), start("peer1", "0")}
	type result struct {
		answer string
		at     time.Time
	}
	results := make(chan result, len(peers))
	for _, p := range peers {
		go func() {
			r := p.do("rpc %s %d 0 20000", victim.addr, e2eBlock)
			results <- result{r, time.Now()}
		}()
	}
	eventually(t, 10*time.Second, func() bool {
		return victim.count("BLOCK "+peers[0].addr) == 1 && victim.count("BLOCK "+peers[1].addr) == 1
	}, "both calls wait in the victim's handler")
	ap, err := netip.ParseAddrPort(victim.addr)
	if err != nil {
		t.Fatal(err)
	}
	victim.kill()
	<-victim.readDone
	killed := time.Now()
	succ := start("successor", strings.TrimPrefix(ap.String(), ap.Addr().String()+":"))
	if succ.addr != victim.addr {
		t.Fatalf("the successor is at %s, not %s", succ.addr, victim.addr)
	}
	t.Logf("the successor synced with MARS %v after the kill", time.Since(killed))
	for range peers {
		select {
		case r := <-results:
			if !strings.HasPrefix(r.answer, "err send ") {
				t.Fatalf("a call pending on the killed process: %s, want a send error", r.answer)
			}
			t.Logf("a pending call failed %v after the kill: %s", r.at.Sub(killed), r.answer)
		case <-time.After(30 * time.Second):
			t.Fatal("a call pending on the killed process still waits 30 s after the restart")
		}
	}
	for _, p := range peers {
		eventually(t, 10*time.Second, func() bool {
			return p.do("rpc %s %d 3 2000", succ.addr, e2eEcho) == "ok 3"
		}, "%s's next call reaches the successor", p.name)
		if n := succ.count("BLOCK " + p.addr); n != 0 {
			t.Fatalf("the successor got %d calls meant for the killed process", n)
		}
	}
}
