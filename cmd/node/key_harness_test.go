package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/testport"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/rudp"
)

// The harness of the cross-process cluster-key tests (key_e2e_test.go):
// mars-server and node binaries, the helper processes of
// key_helper_test.go, and readers of the admin endpoints.

var (
	marsBuildOnce sync.Once
	marsBinPath   string
	marsBuildErr  error
)

// marsBin builds the mars-server binary once per test run.
func marsBin(t *testing.T) string {
	t.Helper()
	nodeBin(t) // makes buildDir
	marsBuildOnce.Do(func() {
		marsBinPath = filepath.Join(buildDir, "mars-server")
		marsBuildErr = goBuild(marsBinPath, "github.com/marsmesh/marsmesh/cmd/mars-server")
	})
	if marsBuildErr != nil {
		t.Fatal(marsBuildErr)
	}
	return marsBinPath
}

// newKey returns a fresh cluster key in its text form.
func newKey(t *testing.T) string {
	t.Helper()
	k, err := rudp.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return config.EncodeKey(k)
}

// writeTestFile writes content to name in dir (mode 0600) and returns its path.
func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePort returns a loopback port free for UDP and TCP, out of the way
// of ports the kernel hands out (internal/testport).
func freePort(t *testing.T) int { return testport.Free(t) }

func freeAdmin(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

// startMarsProc runs mars-server with env and an admin endpoint, and
// waits until it listens.
func startMarsProc(t *testing.T, admin string, env ...string) *proc {
	t.Helper()
	p := startBin(t, marsBin(t), env, "-admin", admin, "-offline-after", "2s", "-remove-after", "5s")
	eventually(t, 20*time.Second, "mars-server listens", func() bool {
		select {
		case <-p.done:
			t.Fatalf("mars-server exited: %v\n%s", p.err, p.stderr.String())
		default:
		}
		return strings.Contains(p.stderr.String(), "mars-server listening")
	})
	return p
}

// stopProc sends SIGTERM and expects exit 0.
func stopProc(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("%v: exit %d after SIGTERM\n%s", p.cmd.Args, code, p.stderr.String())
	}
}

// metric reads an unlabelled counter or gauge from an admin endpoint.
func metric(t *testing.T, admin, name string) float64 {
	t.Helper()
	code, body := httpGet("http://" + admin + "/metrics")
	if code != 200 {
		t.Fatalf("%s/metrics: HTTP %d %.200s", admin, code, body)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, line)
			}
			return f
		}
	}
	t.Fatalf("%s/metrics has no %s", admin, name)
	return 0
}

// rejected is what a transport counted as not authentic or replayed.
func rejected(t *testing.T, admin string) float64 {
	return metric(t, admin, "marsmesh_transport_auth_failures_total") +
		metric(t, admin, "marsmesh_transport_replays_total") +
		metric(t, admin, "marsmesh_transport_bad_datagrams_total")
}

// marsListing is MARS's /v1/nodes.
type marsListing struct {
	Apps []struct {
		Nodes []mars.NodeSnapshot `json:"nodes"`
		Gone  []mars.GoneNode     `json:"gone"`
	} `json:"apps"`
}

func listing(t *testing.T, admin string) marsListing {
	t.Helper()
	code, body := httpGet("http://" + admin + "/v1/nodes")
	var l marsListing
	if code != 200 || json.Unmarshal([]byte(body), &l) != nil {
		t.Fatalf("%s/v1/nodes: HTTP %d %.300s", admin, code, body)
	}
	return l
}

// online lists the addresses MARS has online, and every type it lists or
// removed recently.
func (l marsListing) online() (addrs []string, types map[string]bool) {
	types = map[string]bool{}
	for _, a := range l.Apps {
		for _, n := range a.Nodes {
			types[n.Type] = true
			if n.Status == "online" {
				addrs = append(addrs, n.Addr)
			}
		}
		for _, g := range a.Gone {
			types[g.Type] = true
		}
	}
	return addrs, types
}

// runProbe runs a probe process (key_helper_test.go) to completion.
func runProbe(t *testing.T, env ...string) (*proc, func() probeResult) {
	t.Helper()
	p := startBin(t, os.Args[0], append(env, keyTestRole+"=probe"), "-test.run=^TestKeyHelperProcess$")
	return p, func() probeResult {
		t.Helper()
		if code := p.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("probe exit %d\n%s\n%s", code, p.stdout.String(), p.stderr.String())
		}
		var r probeResult
		line := strings.SplitN(p.stdout.String(), "\n", 2)[0]
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("probe output %q: %v\n%s", p.stdout.String(), err, p.stderr.String())
		}
		return r
	}
}

// client is a rotation client process (key_helper_test.go).
type client struct {
	*proc
	stdin io.WriteCloser
	acks  int
}

func startClient(t *testing.T, env ...string) *client {
	t.Helper()
	p := &proc{cmd: exec.Command(os.Args[0], "-test.run=^TestKeyHelperProcess$"), done: make(chan struct{})}
	p.cmd.Env = append(append(cleanEnv(), env...), keyTestRole+"=client")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	c := &client{proc: p, stdin: stdin}
	eventually(t, 30*time.Second, "the client is ready", func() bool {
		c.alive(t)
		return strings.HasPrefix(p.stdout.String(), "ready\n")
	})
	return c
}

func (c *client) alive(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
		t.Fatalf("client exited: %v\n%s\n%s", c.err, c.stdout.String(), c.stderr.String())
	default:
	}
}

// lines returns the client's output lines that start with prefix.
func (c *client) lines(prefix string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(c.stdout.String()))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// target switches the client's targets and waits until no RPC to an old
// target is in flight.
func (c *client) target(t *testing.T, addrs ...string) {
	t.Helper()
	c.acks++
	fmt.Fprintf(c.stdin, "targets %s\n", strings.Join(addrs, ","))
	want := fmt.Sprintf("ok %d", c.acks)
	eventually(t, 20*time.Second, "the client switches targets", func() bool {
		c.alive(t)
		l := c.lines("ok ")
		return len(l) > 0 && l[len(l)-1] == want
	})
}

// counts asks the client for its totals so far.
func (c *client) counts(t *testing.T) (ok, failed int) {
	t.Helper()
	before := len(c.lines("count "))
	fmt.Fprintln(c.stdin, "count")
	eventually(t, 20*time.Second, "the client counts", func() bool {
		c.alive(t)
		return len(c.lines("count ")) > before
	})
	l := c.lines("count ")
	fmt.Sscanf(l[len(l)-1], "count %d %d", &ok, &failed)
	return ok, failed
}

// waitRPCs waits until the client has n more answered RPCs, and fails at
// once on a failed one.
func (c *client) waitRPCs(t *testing.T, n int) {
	t.Helper()
	start, _ := c.counts(t)
	eventually(t, 30*time.Second, fmt.Sprintf("%d more answered RPCs", n), func() bool {
		ok, failed := c.counts(t)
		if failed > 0 {
			t.Fatalf("the client has %d failed RPCs:\n%s", failed, c.stderr.String())
		}
		return ok >= start+n
	})
}

// stop ends the client and returns its totals.
func (c *client) stop(t *testing.T) clientResult {
	t.Helper()
	fmt.Fprintln(c.stdin, "stop")
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("client exit %d\n%s", code, c.stderr.String())
	}
	var r clientResult
	for _, line := range strings.Split(c.stdout.String(), "\n") {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
		}
	}
	return r
}

// keyedGuest joins the cluster in the test process with key, to read the
// example handlers' counts.
func keyedGuest(t *testing.T, marsPort int, key string) *mesh.Node {
	t.Helper()
	cfg := config.Default()
	cfg.Port, cfg.MarsPort, cfg.MeshKey = "0", strconv.Itoa(marsPort), key
	g, err := mesh.New(cfg, mesh.AsGuest(), mesh.WithLogger(quiet), mesh.WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	select {
	case <-g.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("the keyed guest did not sync with MARS")
	}
	return g
}

// handlerCounts asks a node for its example handlers' counts.
func handlerCounts(t *testing.T, g *mesh.Node, addr string) stats {
	t.Helper()
	resp, err := g.SendRPC(cmdStats, addr, nil)
	if err != nil {
		t.Fatalf("stats RPC to %s: %v", addr, err)
	}
	s, err := decodeStats(resp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
