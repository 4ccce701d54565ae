package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestClusterKeyRotation rotates the key of a running cluster: mars-server
// and three `node run` processes, each with its own meshKeyFile
// (DIARKIS_MESH_KEY_FILE), start with K1. Three times every file is
// rewritten (K1,K2 / K2,K1 / K2) and every process restarted with SIGTERM,
// one at a time: MARS first, then each node, then the client. The client
// (a guest process with a key file of its own) sends echo RPCs without
// pause, one at a time, round robin to the nodes that are not being
// restarted at that moment (it is told before a node stops and after it
// is back). Measured: every RPC the client sent during the whole rotation
// was answered (0 failed), each restarted node answered RPCs before the
// next restart, and MARS lists all three nodes after each MARS restart.
func TestClusterKeyRotation(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	dir := t.TempDir()
	marsPort := strconv.Itoa(freePort(t))
	marsAdmin := freeAdmin(t)
	files := map[string]string{}
	for _, name := range []string{"mars", "n1", "n2", "n3", "client"} {
		files[name] = writeTestFile(t, dir, name+".keys", k1+"\n")
	}
	env := func(name string) []string {
		return []string{"DIARKIS_MARS_PORT=" + marsPort, "DIARKIS_MESH_KEY_FILE=" + files[name]}
	}
	startMars := func() *proc { return startMarsProc(t, marsAdmin, env("mars")...) }
	names := []string{"n1", "n2", "n3"}
	ports := map[string]string{}
	startNode := func(name string) (*proc, string) {
		p := start(t, append(env(name), "DIARKIS_PORT="+ports[name]), "run", "-type", "game", "-value", "name="+name)
		return p, p.joined(t)
	}
	waitListed := func() {
		eventually(t, 30*time.Second, "MARS lists the three nodes online", func() bool {
			online, _ := listing(t, marsAdmin).online()
			return len(online) == 3
		})
	}

	m := startMars()
	nodes := map[string]*proc{}
	addrs := map[string]string{}
	for _, name := range names {
		ports[name] = strconv.Itoa(freePort(t))
		nodes[name], addrs[name] = startNode(name)
	}
	waitListed()
	all := func(except string) []string {
		var out []string
		for _, name := range names {
			if name != except {
				out = append(out, addrs[name])
			}
		}
		return out
	}
	c := startClient(t, env("client")...)
	c.target(t, all("")...)
	c.waitRPCs(t, 10)

	var total clientResult
	addUp := func(r clientResult) {
		total.OK += r.OK
		total.Failed += r.Failed
		total.FirstErrors = append(total.FirstErrors, r.FirstErrors...)
	}
	for _, phase := range []struct{ name, file string }{
		{"K1,K2", k1 + "\n" + k2 + "\n"},
		{"K2,K1", "# new key first\n" + k2 + "\n" + k1 + "\n"},
		{"K2", k2 + "\n"},
	} {
		for _, f := range files {
			if err := os.WriteFile(f, []byte(phase.file), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// MARS: nodes and the client keep talking while it is away.
		stopProc(t, m)
		m = startMars()
		waitListed()
		c.waitRPCs(t, 10)
		// Each node in turn, out of the client's targets while it restarts.
		for _, name := range names {
			c.target(t, all(name)...)
			stopProc(t, nodes[name])
			nodes[name], addrs[name] = startNode(name)
			c.target(t, all("")...)
			c.waitRPCs(t, 10)
		}
		// The client itself.
		addUp(c.stop(t))
		c = startClient(t, env("client")...)
		c.target(t, all("")...)
		c.waitRPCs(t, 10)
		t.Logf("phase %s done: %d RPCs answered, %d failed so far", phase.name, total.OK, total.Failed)
	}
	addUp(c.stop(t))
	t.Logf("rotation K1 -> K1,K2 -> K2,K1 -> K2 with 15 restarts: %d echo RPCs answered, %d failed", total.OK, total.Failed)
	if total.Failed != 0 || total.OK == 0 {
		t.Fatalf("%d RPCs failed during the rotation (%d answered): %v", total.Failed, total.OK, total.FirstErrors)
	}

	// K1 is gone: a process holding only K1 gets no answer; K2 works.
	old := filepath.Join(dir, "old.keys")
	if err := os.WriteFile(old, []byte(k1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runNode(t, 20*time.Second, []string{"DIARKIS_MESH_KEY_FILE=" + old}, "healthcheck", "-addr", addrs["n1"], "-timeout", "1s"); code != 1 {
		t.Errorf("healthcheck with the dropped key K1: exit %d, want 1 (%s)", code, errOut)
	}
	if code, _, errOut := runNode(t, 20*time.Second, []string{"DIARKIS_MESH_KEY=" + k2}, "healthcheck", "-addr", addrs["n1"]); code != 0 {
		t.Errorf("healthcheck with K2: exit %d (%s)", code, errOut)
	}
	for _, name := range names {
		stopProc(t, nodes[name])
	}
	stopProc(t, m)
}
