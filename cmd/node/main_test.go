package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/leaktest"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

// raceEnabled is set by race_test.go; the node binary is then built with
// -race too, so the demo's in-process cluster runs under the detector.
var raceEnabled bool

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(cleanupRunner{m}, leaktest.Options()...)
}

// cleanupRunner removes the build directory after the tests ran.
type cleanupRunner struct{ m *testing.M }

func (r cleanupRunner) Run() int {
	defer func() {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	}()
	return r.m.Run()
}

// nodeBin builds the node binary once per test run and returns its path.
func nodeBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "node-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "node")
		buildErr = goBuild(binPath, ".")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// goBuild builds pkg into out, with -race when the tests run with it.
func goBuild(out, pkg string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	if msg, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return nil
}

// syncbuf.Buffer is defined in demo.go.

// proc is a node child process; the test's cleanup kills it.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	done           chan struct{}
	err            error // Wait's result, once done is closed
}

// start runs the node binary with args and extra environment variables
// (on top of a copy of the environment without DIARKIS_* variables).
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startBin(t, nodeBin(t), env, args...)
}

// startBin is start for any binary.
func startBin(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
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
	return p
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DIARKIS_") {
			env = append(env, kv)
		}
	}
	return env
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%v still running after %v; stderr:\n%s", p.cmd.Args, timeout, p.stderr.String())
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		t.Fatalf("%v: %v", p.cmd.Args, p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// runNode runs the node binary to completion.
func runNode(t *testing.T, timeout time.Duration, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, env, args...)
	code = p.wait(t, timeout)
	return code, p.stdout.String(), p.stderr.String()
}

// eventually polls cond every 5 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startMARS starts an in-process MARS on a free loopback port.
func startMARS(t *testing.T) *mars.Server {
	t.Helper()
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// silentAddr returns a loopback UDP address where nothing answers: a
// socket the test holds (so no other program can take the port) and
// never reads.
func silentAddr(t *testing.T) string {
	t.Helper()
	return hold(t, "127.0.0.1:0")
}

// hold binds addr with a socket that never answers until the test ends,
// and returns its address.
func hold(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

var joinedRE = regexp.MustCompile(`msg="joined the cluster" addr=(\S+)`)

// joined waits until a `node run` process has synced and returns its mesh address.
func (p *proc) joined(t *testing.T) string {
	t.Helper()
	var addr string
	eventually(t, 10*time.Second, "the node logs that it joined", func() bool {
		if m := joinedRE.FindStringSubmatch(p.stderr.String()); m != nil {
			addr = m[1]
			return true
		}
		select {
		case <-p.done:
			t.Fatalf("node exited early: %v\n%s", p.err, p.stderr.String())
		default:
		}
		return false
	})
	return addr
}

func TestDemo(t *testing.T) {
	code, out, errOut := runNode(t, 90*time.Second, nil, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"retryTimeout 1000 ms", "offline after 1s", "removes it after 3s",
		"RPC echo", "RPC handler error", "RPC timeout", "Send", "USend", "SendMany (limit 2)", "shared data",
		"node values", "node killed", "killed node leaves", "graceful shutdown",
		"p50", "PASS: 13 of 13 steps passed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	steps := 0
	for _, line := range strings.Split(out, "\n") {
		if regexp.MustCompile(`^\s*\d+\s`).MatchString(line) {
			steps++
			if !strings.Contains(line, "  PASS  ") {
				t.Errorf("step did not pass: %s", line)
			}
		}
	}
	if steps != 13 {
		t.Errorf("%d step lines, want 13:\n%s", steps, out)
	}
	// The child process the demo killed is gone (reaped, not a zombie).
	m := regexp.MustCompile(`child process \(pid (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no child pid in the report:\n%s", out)
	}
	var pid int
	fmt.Sscan(m[1], &pid)
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the demo's child process %d is still there (kill 0: %v)", pid, err)
	}
}

// TestRunStatusHealthcheck is the README's quick start with background
// processes: MARS, two `node run`, then status and healthcheck, then one
// node stops and its health check fails.
func TestRunStatusHealthcheck(t *testing.T) {
	srv := startMARS(t)
	env := []string{"DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", srv.Addr().Port()), "DIARKIS_PORT=0"}
	a := start(t, env, "run", "-type", "game", "-value", "region=eu", "-value", "capacity=100", "-endpoint", "127.0.0.1:7000")
	b := start(t, env, "run", "-type", "lobby", "-role", "HTTP", "-value", "motd=hello world")
	addrA, addrB := a.joined(t), b.joined(t)

	// A guest in the test sets shared data and talks to the nodes' handlers.
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", fmt.Sprint(srv.Addr().Port())
	g, err := mesh.New(cfg, mesh.AsGuest(), mesh.WithLogger(quiet), mesh.WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown()
	<-g.Ready()
	eventually(t, 5*time.Second, "the guest lists both nodes", func() bool { return len(g.GetNodeAddresses(nil)) == 2 })
	if resp, err := g.SendRPC(cmdEcho, addrA, []byte("ping")); err != nil || string(resp) != "ping" {
		t.Fatalf("echo RPC: %q, %v", resp, err)
	}
	if err := g.SendMany(cmdBroadcast, []string{addrA, addrB}, map[string]interface{}{"text": "hi all"}, 1); err != nil {
		t.Fatal(err)
	}
	g.SetSharedData("rooms", 3)
	eventually(t, 5*time.Second, "MARS has the shared data", func() bool { v, ok := g.GetSharedData("rooms"); return ok && v == 3 })

	code, out, errOut := runNode(t, 10*time.Second, nil, "status", "-mars", srv.Addr().String())
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"2 nodes", "type game: 1 node", "type lobby: 1 node", addrA, addrB, "online", "HTTP",
		"127.0.0.1:7000", "capacity=100 region=eu", `motd="hello world"`, "rooms", " 3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runNode(t, 10*time.Second, nil, "healthcheck", "-addr", addrA)
	if code != 0 || !strings.HasPrefix(out, "ok: "+addrA) {
		t.Fatalf("healthcheck of a live node: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// SIGTERM: a clean stop, exit 0.
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("node run after SIGTERM: exit %d\n%s", code, a.stderr.String())
	}
	if s := a.stderr.String(); !strings.Contains(s, "msg=stopped") || !strings.Contains(s, "broadcasts=1") {
		t.Errorf("node run log lacks the stop line with one broadcast:\n%s", s)
	}
	eventually(t, 5*time.Second, "MARS lists the stopped node offline", func() bool {
		return g.IsNodeOffline(addrA) || g.GetNode(addrA) == nil
	})
	// Hold the stopped node's port, so no other program takes it and answers.
	if c, err := net.ListenPacket("udp4", addrA); err == nil {
		defer c.Close()
	}
	start := time.Now()
	code, _, errOut = runNode(t, 10*time.Second, nil, "healthcheck", "-addr", addrA, "-timeout", "500ms")
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "did not answer") {
		t.Fatalf("healthcheck of a stopped node: exit %d, stderr %q", code, errOut)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("healthcheck with -timeout 500ms took %v", took)
	}
}

// TestHealthcheckWithoutMARS: the health check needs no MARS, answers
// fast for a live node and fails for a dead address.
func TestHealthcheckWithoutMARS(t *testing.T) {
	noMARS := silentAddr(t)
	_, port, _ := net.SplitHostPort(noMARS)
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", port
	n, err := mesh.New(cfg, mesh.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	env := []string{"DIARKIS_MARS_PORT=" + port}

	// MARS never answers, so a health check that needed it could not
	// succeed: exit 0 is the proof that it does not wait for MARS (no
	// wall-clock bound here: a -race process start under load varies).
	code, out, errOut := runNode(t, 10*time.Second, env, "healthcheck", "-addr", n.GetMyEndPoint(), "-timeout", "3s")
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("live node, no MARS: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Logf("with MARS silent: %s", strings.TrimSpace(out))
	code, out, errOut = runNode(t, 10*time.Second, env, "healthcheck", "-q", "-addr", n.GetMyEndPoint())
	if code != 0 || out != "" {
		t.Fatalf("-q: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, out, errOut = runNode(t, 10*time.Second, env, "healthcheck", "-addr", silentAddr(t), "-timeout", "300ms")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "node healthcheck: ") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("dead address: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestStatusWithoutMARS(t *testing.T) {
	code, out, errOut := runNode(t, 10*time.Second, nil, "status", "-mars", silentAddr(t), "-timeout", "300ms")
	if code != 1 || out != "" || !strings.Contains(errOut, "did not answer within 300ms") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestUsageAndBadFlags runs the command in-process: nothing here gets as
// far as starting a node.
func TestUsageAndBadFlags(t *testing.T) {
	dir := t.TempDir()
	badJSON := filepath.Join(dir, "bad.json")
	os.WriteFile(badJSON, []byte(`{"retryInterval": "fast"}`), 0o644)
	call := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := realMain(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	if code, _, errOut := call(); code != 2 || !strings.Contains(errOut, "Usage: node <subcommand>") {
		t.Errorf("no subcommand: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := call("fly"); code != 2 || !strings.Contains(errOut, `unknown subcommand "fly"`) || !strings.Contains(errOut, "Usage:") {
		t.Errorf("unknown subcommand: exit %d, stderr %q", code, errOut)
	}
	if code, out, _ := call("-h"); code != 0 || !strings.Contains(out, "healthcheck") || strings.Contains(out, demoNodeCmd) {
		t.Errorf("-h: exit %d, stdout %q", code, out)
	}
	for sub, flags := range map[string][]string{
		"run":         {"-config", "-type", "-role", "-endpoint", "-app", "-value", "-log-level"},
		"demo":        {"-nodes", "-v"},
		"status":      {"-config", "-mars", "-app", "-timeout"},
		"healthcheck": {"-addr", "-timeout", "-config", "-q"},
	} {
		code, out, errOut := call(sub, "-h")
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage: node "+sub) {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q", sub, code, out, errOut)
		}
		for _, f := range flags {
			if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(f) + `\s`).MatchString(out) {
				t.Errorf("%s -h lacks %s:\n%s", sub, f, out)
			}
		}
	}

	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"run", "-bogus"}, "", "flag provided but not defined: -bogus"},
		{[]string{"run", "stray"}, "", `unexpected argument "stray"`},
		{[]string{"run", "-value", "novalue"}, "", "want k=v"},
		{[]string{"run", "-type", ""}, "", "-type must not be empty"},
		{[]string{"run", "-endpoint", "nope"}, "", "-endpoint"},
		{[]string{"run", "-log-level", "loud"}, "", "-log-level"},
		{[]string{"run", "-config", filepath.Join(dir, "missing.json")}, "", "missing.json"},
		{[]string{"run", "-config", badJSON}, "", "retryInterval"},
		{[]string{"run"}, "DIARKIS_RETRY_TIMEOUT=soon", "DIARKIS_RETRY_TIMEOUT"},
		{[]string{"demo", "-nodes", "1"}, "", "-nodes 1"},
		{[]string{"demo", "-nodes", "x"}, "", "-nodes"},
		{[]string{"status", "-timeout", "0s"}, "", "-timeout"},
		{[]string{"status", "-mars", "nohost"}, "", "-mars"},
		{[]string{"status", "-mars", "127.0.0.1:99999"}, "", "marsPort"},
		{[]string{"status", "-config", badJSON}, "", "retryInterval"},
		{[]string{"healthcheck"}, "", "-addr is required"},
		{[]string{"healthcheck", "-addr", "127.0.0.1"}, "", "want host:port"},
		{[]string{"healthcheck", "-addr", "127.0.0.1:0"}, "", "want host:port"},
		{[]string{"healthcheck", "-addr", "127.0.0.1:8000", "-timeout", "-1s"}, "", "-timeout"},
		{[]string{"healthcheck", "-addr", "127.0.0.1:8000"}, "DIARKIS_SEND_INTERVAL=5", "sendInterval"},
	} {
		if tc.env != "" {
			k, v, _ := strings.Cut(tc.env, "=")
			t.Setenv(k, v)
		}
		code, out, errOut := call(tc.args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) ||
			!strings.HasPrefix(errOut, "node "+tc.args[0]+": ") {
			t.Errorf("%v %s: exit %d, stdout %q, stderr %q (want exit 2 and one line with %q)", tc.args, tc.env, code, out, errOut, tc.want)
		}
		if tc.env != "" {
			k, _, _ := strings.Cut(tc.env, "=")
			os.Unsetenv(k)
		}
	}
}

// TestExitCodesOfTheBinary checks the real main's exit codes.
func TestExitCodesOfTheBinary(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"nope"}, 2},
		{[]string{"run", "-bogus"}, 2},
		{[]string{"status", "-h"}, 0},
	} {
		if code, _, errOut := runNode(t, 10*time.Second, nil, tc.args...); code != tc.code {
			t.Errorf("node %v: exit %d, want %d; stderr %q", tc.args, code, tc.code, errOut)
		}
	}
}

func TestFormatValues(t *testing.T) {
	got := formatValues(map[string]interface{}{"b": int64(2), "a": "x y", "c": true, "d": ""})
	if want := `a="x y" b=2 c=true d=""`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := formatValues(nil); got != "-" {
		t.Errorf("empty: %q", got)
	}
	v := valuesFlag{}
	for _, s := range []string{"n=42", "ok=true", "name=eu-1", "empty="} {
		if err := v.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if v["n"] != int64(42) || v["ok"] != true || v["name"] != "eu-1" || v["empty"] != "" {
		t.Errorf("parsed values: %#v", v)
	}
}
