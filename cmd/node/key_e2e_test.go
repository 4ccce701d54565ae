package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cross-process tests of the cluster key (issue 11): mars-server, `node
// run` processes and helper processes talk over loopback UDP, each
// configured only through meshKey, meshKeyFile or DIARKIS_MESH_KEY /
// DIARKIS_MESH_KEY_FILE.

// TestClusterKeyKeepsOutsidersOut: a keyed MARS and two keyed nodes (one
// keyed by DIARKIS_MESH_KEY, one by meshKeyFile in its JSON file). A keyed
// client process exchanges RPCs with them, and a keyed probe delivers its
// messages (the control). A keyless probe and a wrong-key probe (meshKey
// in their JSON file) get no registration at MARS, no RPC answer, no
// health-check answer and deliver nothing to any handler; `node status`
// and `node healthcheck` work with the key only.
func TestClusterKeyKeepsOutsidersOut(t *testing.T) {
	key, wrong := newKey(t), newKey(t)
	dir := t.TempDir()
	marsPort := strconv.Itoa(freePort(t))
	base := []string{"DIARKIS_MARS_PORT=" + marsPort}
	marsAdmin := freeAdmin(t)
	startMarsProc(t, marsAdmin, append(base, "DIARKIS_MESH_KEY="+key)...)

	adminA := freeAdmin(t)
	a := start(t, append(base, "DIARKIS_PORT=0", "DIARKIS_MESH_KEY="+key), "run", "-type", "game", "-admin", adminA)
	keyFile := writeTestFile(t, dir, "cluster.keys", "# the cluster key\n"+key+"\n")
	cfgB := writeTestFile(t, dir, "b.json", `{"port": 0, "marsPort": `+marsPort+`, "meshKeyFile": "`+keyFile+`"}`)
	b := start(t, nil, "run", "-type", "game", "-config", cfgB)
	addrA, addrB := a.joined(t), b.joined(t)

	// Keyed processes talk: a client exchanges RPCs with both nodes, and
	// the control probe's messages arrive.
	c := startClient(t, append(base, "DIARKIS_MESH_KEY_FILE="+keyFile)...)
	c.target(t, addrA, addrB)
	c.waitRPCs(t, 20)
	if r := c.stop(t); r.Failed != 0 || r.PerTarget[addrA] == 0 || r.PerTarget[addrB] == 0 {
		t.Fatalf("keyed client: %+v", r)
	}
	targets := keyTestTargets + "=" + addrA + "," + addrB
	_, control := runProbe(t, append(base, "DIARKIS_PORT=0", "DIARKIS_MESH_KEY="+key, targets, keyTestOwnMars+"=1", keyTestType+"=control")...)
	if r := control(); !r.Joined || r.RPCAnswers != 6 || r.HealthOK != 2 || r.Sends != 12 || r.Broadcasts != 1 {
		t.Fatalf("the control probe (with the key) did not get in: %+v", r)
	}
	g := keyedGuest(t, freePortOf(marsPort), key)
	want := stats{CounterTotal: 6000, CounterMessages: 6, Broadcasts: 1}
	for _, addr := range []string{addrA, addrB} {
		eventually(t, 10*time.Second, "the control probe's messages arrive at "+addr, func() bool {
			return handlerCounts(t, g, addr) == want
		})
	}
	rejectedA, rejectedMars := rejected(t, adminA), rejected(t, marsAdmin)

	// The outsiders, at the same time.
	wrongCfg := writeTestFile(t, dir, "wrong.json", `{"port": 0, "marsPort": `+marsPort+`, "meshKey": "`+wrong+`"}`)
	_, keyless := runProbe(t, append(base, "DIARKIS_PORT=0", targets, keyTestOwnMars+"=1", keyTestType+"=intruder")...)
	_, wrongKey := runProbe(t, keyTestConfig+"="+wrongCfg, targets, keyTestOwnMars+"=1", keyTestType+"=intruder")
	for name, r := range map[string]probeResult{"keyless": keyless(), "wrong key": wrongKey()} {
		// Sends and RPC errors show the probe did send (one-way sends
		// return once queued; the RPCs went out and found no peer that
		// answers: not refused locally as unhealthy).
		if r.Joined || r.RPCAnswers != 0 || r.HealthOK != 0 || r.RPCErrors != 6 || r.Sends != 12 {
			t.Errorf("%s probe: %+v", name, r)
		}
		for _, e := range r.FirstErrors {
			if !strings.Contains(e, "peer unreachable") && !strings.Contains(e, "timeout") {
				t.Errorf("%s probe: an RPC failed otherwise than unanswered: %s", name, e)
			}
		}
	}

	// The control probe left MARS when it stopped.
	eventually(t, 15*time.Second, "MARS lists only the two nodes", func() bool {
		online, _ := listing(t, marsAdmin).online()
		return len(online) == 2
	})

	// `node status` and `node healthcheck`: with the key only.
	code, out, errOut := runNode(t, 20*time.Second, append(base, "DIARKIS_MESH_KEY="+key), "status")
	if code != 0 || !strings.Contains(out, "MARS 127.0.0.1:"+marsPort+`, app "" (default): 2 nodes`) ||
		!strings.Contains(out, addrA) || !strings.Contains(out, addrB) || strings.Contains(out, "intruder") {
		t.Errorf("status with the key: exit %d\n%s\n%s", code, out, errOut)
	}
	var refused []*proc // all at once
	for _, env := range [][]string{base, append(base, "DIARKIS_MESH_KEY="+wrong)} {
		refused = append(refused, start(t, env, "status", "-timeout", "2s"),
			start(t, env, "healthcheck", "-addr", addrA, "-timeout", "1s"))
	}
	for _, p := range refused {
		if code := p.wait(t, 20*time.Second); code != 1 || p.stdout.String() != "" || !strings.Contains(p.stderr.String(), "did not answer") {
			t.Errorf("%v with %v: exit %d\n%s\n%s", p.cmd.Args[1:], p.cmd.Env[len(p.cmd.Env)-1], code, p.stdout.String(), p.stderr.String())
		}
	}
	if code, out, errOut := runNode(t, 20*time.Second, []string{"DIARKIS_MESH_KEY_FILE=" + keyFile}, "healthcheck", "-addr", addrB); code != 0 ||
		!strings.HasPrefix(out, "ok: "+addrB) {
		t.Errorf("healthcheck with the key: exit %d\n%s\n%s", code, out, errOut)
	}

	// Nothing of the outsiders arrived, seconds after they sent it.
	for _, addr := range []string{addrA, addrB} {
		if got := handlerCounts(t, g, addr); got != want {
			t.Errorf("%s: handler counts %+v, want only the control probe's %+v", addr, got, want)
		}
	}
	online, types := listing(t, marsAdmin).online()
	slices.Sort(online)
	wantOnline := []string{addrA, addrB}
	slices.Sort(wantOnline)
	if !slices.Equal(online, wantOnline) || types["intruder"] {
		t.Errorf("MARS lists %v online and the types %v; want %v and no intruder", online, types, wantOnline)
	}
	// The transports counted what they refused (not logged per packet).
	if d := rejected(t, adminA) - rejectedA; d == 0 {
		t.Errorf("node A counted no refused datagram")
	}
	if d := rejected(t, marsAdmin) - rejectedMars; d == 0 {
		t.Errorf("MARS counted no refused datagram")
	}
	stopProc(t, a)
	stopProc(t, b)
}

func freePortOf(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
