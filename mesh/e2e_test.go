package mesh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests with separate processes over real UDP on 127.0.0.1: a
// mars-server binary built from cmd/mars-server, and node processes that are
// this test binary re-executed (TestHelperNode with MESH_E2E_NODE=1). A node
// process uses only the package-level API, configured through a JSON file
// and DIARKIS_* variables; it prints its mesh address and then obeys one
// command per line on stdin (see runHelperNode). The test process drives
// them with nodes of its own made by New.

const (
	e2eNodeEnv   = "MESH_E2E_NODE"   // set: this process is a node process
	e2eTypeEnv   = "MESH_E2E_TYPE"   // its node type
	e2eConfigEnv = "MESH_E2E_CONFIG" // its config file

	// Command IDs the node processes (and the test's own nodes) handle.
	e2eEcho  uint16 = 7001 // RPC: echo
	e2eFail  uint16 = 7002 // RPC: fails with "boom: <data>"
	e2eBlock uint16 = 7003 // RPC: prints BLOCK, then waits for its context
	e2eCmd   uint16 = 7010 // command: prints CMD <tag>
	e2eRaw   uint16 = 7011 // raw command: prints RAW <sender> <payload>

	// e2eRetryTimeout is every node's retryTimeout, in ms.
	e2eRetryTimeout = 1000
	// e2eSlack absorbs scheduling noise on a loaded 2-core machine with
	// the race detector.
	e2eSlack = 500 * time.Millisecond
)

// TestHelperNode is not a test: it is the body of a node process for
// TestE2E, and skips unless MESH_E2E_NODE is set.
func TestHelperNode(t *testing.T) {
	if os.Getenv(e2eNodeEnv) == "" {
		t.Skip("node process body for TestE2E; runs only with " + e2eNodeEnv + " set")
	}
	// A node process whose parent vanished without closing stdin ends anyway.
	guard := time.AfterFunc(3*time.Minute, func() { os.Exit(3) })
	defer guard.Stop()
	if err := runHelperNode(os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

// runHelperNode registers handlers, sets the default node up from the
// config file and environment, prints "ADDR <mesh address>" and serves
// commands until stdin closes or says "quit". Every command is answered by
// one line "R <answer>"; handlers print event lines (CMD, RAW, BLOCK).
func runHelperNode(in io.Reader, out io.Writer) error {
	var outMu sync.Mutex
	emit := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	HandleRPC(e2eEcho, func(d []byte, _ string) ([]byte, error) { return d, nil })
	HandleRPC(e2eFail, func(d []byte, _ string) ([]byte, error) { return nil, fmt.Errorf("boom: %s", d) })
	HandleRPCWithContext(e2eBlock, func(ctx context.Context, _ []byte, from string) ([]byte, error) {
		emit("BLOCK %s", from)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	HandleCommand(e2eCmd, func(m map[string]interface{}) ([]byte, error) {
		emit("CMD %s", GetString(m, "tag"))
		return nil, nil
	})
	SetCommandHandler(e2eRaw, func(p []byte, from string) ([]byte, error) {
		emit("RAW %s %s", from, p)
		return nil, nil
	})
	SetNodeType(os.Getenv(e2eTypeEnv))
	ready := make(chan struct{})
	OnReady(func() { close(ready) })
	if err := Setup(os.Getenv(e2eConfigEnv)); err != nil {
		return err
	}
	defer Shutdown()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		return errors.New("no first sync with MARS in 10 s")
	}
	emit("ADDR %s", GetMyEndPoint())
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "quit" {
			break
		}
		emit("R %s", helperCommand(f))
	}
	return Shutdown()
}

// helperAdds are the background adds of shared-add.
var (
	helperAdds      sync.WaitGroup
	helperAddFailed atomic.Bool
)

// helperCommand runs one command of a node process and returns its answer.
func helperCommand(f []string) string {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	num := func(i int) int { v, _ := strconv.Atoi(arg(i)); return v }
	okOrErr := func(err error) string {
		if err != nil {
			return "err " + errClass(err) + " " + err.Error()
		}
		return "ok"
	}
	switch f[0] {
	case "rpc": // rpc <addr> <cmd> <size> <timeout ms>
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(num(4))*time.Millisecond)
		defer cancel()
		req := bytes.Repeat([]byte{'r'}, num(3))
		resp, err := SendRPCWithContext(ctx, uint16(num(2)), arg(1), req)
		if err != nil {
			return okOrErr(err)
		}
		if !bytes.Equal(resp, req) {
			return fmt.Sprintf("bad echo of %d bytes", len(resp))
		}
		return fmt.Sprintf("ok %d", len(resp))
	case "send": // send <addr> <tag>
		return okOrErr(Send(e2eCmd, arg(1), map[string]interface{}{"tag": arg(2)}))
	case "shared-set": // shared-set <key> <value>
		return fmt.Sprint(SetSharedData(arg(1), int16(num(2))))
	case "shared-add": // shared-add <key> <delta> <count> <spread ms>: count adds over about spread ms, in the background
		helperAdds.Add(1)
		go func() {
			defer helperAdds.Done()
			for i := 0; i < num(3); i++ {
				if !AddSharedData(arg(1), int16(num(2))) {
					helperAddFailed.Store(true)
				}
				if num(4) > 0 && i%10 == 9 {
					time.Sleep(time.Duration(num(4)) * time.Millisecond / time.Duration(max(1, num(3)/10)))
				}
			}
		}()
		return "started"
	case "shared-add-wait": // shared-add-wait: waits for the background adds
		helperAdds.Wait()
		return fmt.Sprint(!helperAddFailed.Load())
	case "sync-age": // sync-age: ms since MARS last answered, or -1
		if age, ok := Default().mc.SyncAge(); ok {
			return fmt.Sprint(age.Milliseconds())
		}
		return "-1"
	case "shared-get": // shared-get <key>
		v, ok := GetSharedData(arg(1))
		return fmt.Sprint(v, ok)
	case "value-set": // value-set <name> <int>
		SetNodeValue(arg(1), num(2))
		return "ok"
	case "value-get": // value-get <addr> <name>
		return fmt.Sprint(GetInt(GetNodeValues(arg(1)), arg(2)))
	case "status": // status <int>
		SetStatus(num(1))
		return "ok"
	case "taken": // taken <addr>
		return fmt.Sprint(IsNodeTaken(arg(1)))
	case "nodes":
		addrs := GetNodeAddresses(nil)
		slices.Sort(addrs)
		return strings.Join(addrs, ",")
	}
	return "unknown command " + f[0]
}

// errClass names the predicate an error satisfies.
func errClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case IsSendError(err):
		return "send"
	case IsRequestTimeoutError(err):
		return "timeout"
	case IsRequestError(err):
		return "request"
	case IsUnhealthyError(err):
		return "unhealthy"
	}
	return "unclassified"
}

// lockedBuffer collects a process's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// childEnv is this process's environment without DIARKIS_* variables,
// plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DIARKIS_") && !strings.HasPrefix(kv, "MESH_E2E_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// buildMarsServer builds cmd/mars-server into a temporary directory.
func buildMarsServer(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "go" // exec reports that it is missing
	}
	bin := filepath.Join(t.TempDir(), "mars-server")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/marsmesh/marsmesh/cmd/mars-server").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/mars-server: %v\n%s", err, out)
	}
	return bin
}

// marsProcess is a running mars-server.
type marsProcess struct {
	cmd  *exec.Cmd
	port uint16
	log  *lockedBuffer
}

// startMarsServer runs bin on a free loopback port (retrying if another
// process takes the port first) and waits until it listens.
func startMarsServer(t *testing.T, bin string, args ...string) *marsProcess {
	t.Helper()
	for attempt := 0; ; attempt++ {
		p, inUse := tryMarsServer(t, bin, args)
		if p != nil {
			return p
		}
		if !inUse || attempt == 3 {
			t.FailNow() // tryMarsServer reported why
		}
	}
}

// tryMarsServer starts one mars-server; it returns nil and whether the
// port was taken if it did not start.
func tryMarsServer(t *testing.T, bin string, args []string) (p *marsProcess, portInUse bool) {
	t.Helper()
	port := freeUDPPort(t)
	p = &marsProcess{cmd: exec.Command(bin, args...), port: port, log: &lockedBuffer{}}
	p.cmd.Env = childEnv("DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", port))
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "mars-server listening") {
		select {
		case <-exited:
			if strings.Contains(p.log.String(), "address already in use") {
				t.Logf("MARS port %d was taken; trying another", port)
				return nil, true
			}
			t.Errorf("mars-server exited:\n%s", p.log)
			return nil, false
		default:
		}
		if time.Now().After(deadline) {
			t.Errorf("mars-server did not start:\n%s", p.log)
			return nil, false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, false
}

// procNode is a node in a child process.
type procNode struct {
	t        *testing.T
	name     string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stderr   *lockedBuffer
	addr     string
	replies  chan string
	readDone chan struct{}

	callMu sync.Mutex // one command at a time

	mu     sync.Mutex
	events []string
	killed bool
}

// startProcNode starts a node process of type typ that reads the config
// file cfgPath and finds MARS through DIARKIS_MARS_PORT (env adds or
// overrides variables). It may run on any
// goroutine; the caller stops the process (stop) when the test ends.
func startProcNode(t *testing.T, name string, marsPort uint16, cfgPath, typ string, env ...string) (*procNode, error) {
	p := &procNode{
		t: t, name: name, stderr: &lockedBuffer{},
		replies: make(chan string, 16), readDone: make(chan struct{}),
	}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperNode$", "-test.count=1")
	p.cmd.Env = childEnv(
		e2eNodeEnv+"=1", e2eTypeEnv+"="+typ, e2eConfigEnv+"="+cfgPath,
		fmt.Sprintf("DIARKIS_MARS_PORT=%d", marsPort),
		"DIARKIS_PORT=0",
		fmt.Sprintf("DIARKIS_RETRY_TIMEOUT=%d", e2eRetryTimeout),
	)
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	addrc := make(chan string, 1)
	go p.read(stdout, addrc)
	select {
	case p.addr = <-addrc:
		return p, nil
	case <-p.readDone:
		err = fmt.Errorf("%s exited before it was ready:\n%s", name, p.stderr)
	case <-time.After(20 * time.Second):
		err = fmt.Errorf("%s did not start in 20 s:\n%s", name, p.stderr)
	}
	p.kill()
	p.stop()
	return nil, err
}

func (p *procNode) read(stdout io.Reader, addrc chan<- string) {
	defer close(p.readDone)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "ADDR "):
			addrc <- strings.TrimPrefix(line, "ADDR ")
		case strings.HasPrefix(line, "R "):
			p.replies <- strings.TrimPrefix(line, "R ")
		case strings.HasPrefix(line, "CMD "), strings.HasPrefix(line, "RAW "), strings.HasPrefix(line, "BLOCK "):
			p.mu.Lock()
			p.events = append(p.events, line)
			p.mu.Unlock()
		}
	}
}

// do sends one command and returns the answer.
func (p *procNode) do(format string, args ...any) string {
	p.callMu.Lock()
	defer p.callMu.Unlock()
	if _, err := fmt.Fprintf(p.stdin, format+"\n", args...); err != nil {
		return "write failed: " + err.Error()
	}
	select {
	case r := <-p.replies:
		return r
	case <-p.readDone:
		return "process exited"
	case <-time.After(30 * time.Second):
		return "no answer in 30 s"
	}
}

// count returns how many event lines equal line.
func (p *procNode) count(line string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.events {
		if e == line {
			n++
		}
	}
	return n
}

// kill ends the process with SIGKILL: no goodbye to MARS or peers.
func (p *procNode) kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGKILL)
}

// stop asks the process to shut down (closing stdin), kills it if it does
// not exit in time, and reports a non-zero exit or a data race.
func (p *procNode) stop() {
	p.stdin.Close()
	select {
	case <-p.readDone:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s did not exit after stdin closed; killing it", p.name)
		p.kill()
		<-p.readDone
	}
	err := p.cmd.Wait()
	p.mu.Lock()
	killed := p.killed
	p.mu.Unlock()
	if strings.Contains(p.stderr.String(), "DATA RACE") || (!killed && err != nil) {
		p.t.Errorf("%s: %v\n%s", p.name, err, p.stderr)
	}
}

// e2eConfig writes the node processes' config file: everything but the
// MARS port and the retry timeout, which come from DIARKIS_* variables.
func e2eConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mesh.json")
	cfg := `{"address": "127.0.0.1", "port": 8000, "marsAddress": "127.0.0.1", "retryInterval": 200, "strictCheckForExternal": false}`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// msgLog records what command handlers of in-process nodes receive.
type msgLog struct {
	mu  sync.Mutex
	got map[string]int // "<node addr> <tag>" -> count
}

func (l *msgLog) handle(t *testing.T, n *Node, cmd uint16) {
	t.Helper()
	addr := n.GetMyEndPoint()
	if !n.HandleCommand(cmd, func(m map[string]interface{}) ([]byte, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.got[addr+" "+GetString(m, "tag")]++
		return nil, nil
	}) {
		t.Fatal("handler refused")
	}
}

func (l *msgLog) count(addr, tag string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[addr+" "+tag]
}

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with processes; skipped with -short")
	}
	began := time.Now()
	bin := buildMarsServer(t)
	t.Logf("built mars-server in %v", time.Since(began))
	// Short liveness so that a killed node leaves within seconds.
	mp := startMarsServer(t, bin, "-offline-after", "2s", "-remove-after", "3s")
	cfgPath := e2eConfig(t)

	// Five node processes (started together) and sixteen in-process nodes.
	procs := make([]*procNode, 5)
	startErrs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i], startErrs[i] = startProcNode(t, fmt.Sprintf("proc%d", i), mp.port, cfgPath, "game")
		}()
	}
	t.Cleanup(func() {
		// Stop the processes together (each shuts down gracefully).
		var wg sync.WaitGroup
		for _, p := range procs {
			if p != nil {
				wg.Add(1)
				go func() { defer wg.Done(); p.stop() }()
			}
		}
		wg.Wait()
	})
	cfg := testConfig(mp.port)
	cfg.RetryTimeout = e2eRetryTimeout
	newLocal := func(typ string) *Node {
		n, err := New(cfg, WithType(typ), WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		return n
	}
	driver := newLocal("driver")
	locals := make([]*Node, 15)
	for i := range locals {
		locals[i] = newLocal("game")
	}
	wg.Wait()
	if err := errors.Join(startErrs...); err != nil {
		t.Fatal(err)
	}
	all := append([]*Node{driver}, locals...)
	eventually(t, 10*time.Second, func() bool {
		for _, n := range all {
			if len(n.GetNodeAddresses(nil)) != 21 {
				return false
			}
		}
		return true
	}, "every in-process node lists all 21 nodes")
	for _, p := range procs {
		eventually(t, 5*time.Second, func() bool { return len(strings.Split(p.do("nodes"), ",")) == 21 }, "%s lists all 21 nodes", p.name)
	}
	t.Logf("cluster of 5 processes and 16 in-process nodes up after %v", time.Since(began))

	log := &msgLog{got: map[string]int{}}
	for _, n := range all {
		log.handle(t, n, e2eCmd)
	}
	var rawMu sync.Mutex
	var rawFrom []string
	driver.SetCommandHandler(e2eRaw, func(p []byte, from string) ([]byte, error) {
		rawMu.Lock()
		rawFrom = append(rawFrom, from+" "+string(p))
		rawMu.Unlock()
		return nil, nil
	})
	driver.HandleRPCWithContext(e2eBlock, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})

	t.Run("RPCEcho", func(t *testing.T) {
		to := procs[0].addr
		for _, size := range []int{0, 64, 1 << 20, MaxMessageSize} {
			req := bytes.Repeat([]byte{byte(size % 251)}, size)
			ctx, cancel := context.WithTimeout(context.Background(), DefaultRPCTimeout)
			if size == MaxMessageSize {
				// 10 MB through a race-instrumented process can take longer
				// than the 3 s default on a loaded machine; the time is logged.
				ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
			}
			start := time.Now()
			resp, err := driver.SendRPCWithContext(ctx, e2eEcho, to, req)
			cancel()
			if err != nil {
				t.Fatalf("%d bytes: %v", size, err)
			}
			if !bytes.Equal(resp, req) {
				t.Fatalf("%d bytes: echo of %d bytes differs", size, len(resp))
			}
			t.Logf("echo of %d bytes to a process: %v", size, time.Since(start))
		}
		start := time.Now()
		_, err := driver.SendRPC(e2eEcho, to, make([]byte, MaxMessageSize+1))
		if !IsSendError(err) || IsRequestError(err) || IsRequestTimeoutError(err) {
			t.Fatalf("10,000,001 bytes: %v", err)
		}
		if el := time.Since(start); el > 200*time.Millisecond {
			t.Fatalf("oversized RPC refused only after %v", el)
		}
		// Process to process, through the package-level API.
		if got := procs[0].do("rpc %s %d 64 3000", procs[1].addr, e2eEcho); got != "ok 64" {
			t.Fatalf("process-to-process RPC: %s", got)
		}
		if got := procs[0].do("rpc %s %d %d 3000", procs[1].addr, e2eEcho, MaxMessageSize+1); !strings.HasPrefix(got, "err send ") {
			t.Fatalf("process-to-process oversized RPC: %s", got)
		}
	})

	t.Run("RPCErrorsClassified", func(t *testing.T) {
		to := procs[1].addr
		_, err := driver.SendRPC(e2eFail, to, []byte("x"))
		var re *RemoteError
		if !IsRequestError(err) || IsSendError(err) || IsRequestTimeoutError(err) || !errors.As(err, &re) || re.Message != "boom: x" {
			t.Fatalf("handler error: %v", err)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		_, err = driver.SendRPCWithContext(ctx, e2eBlock, to, nil)
		cancel()
		if !IsRequestTimeoutError(err) || IsRequestError(err) || IsSendError(err) {
			t.Fatalf("timeout: %v", err)
		}
		if el := time.Since(start); el > 300*time.Millisecond+e2eSlack {
			t.Fatalf("timeout after %v", el)
		}

		ctx, cancel = context.WithCancel(context.Background())
		var cancelled time.Time
		timer := time.AfterFunc(100*time.Millisecond, func() { cancelled = time.Now(); cancel() })
		_, err = driver.SendRPCWithContext(ctx, e2eBlock, to, nil)
		returned := time.Now()
		timer.Stop()
		cancel()
		if !IsRequestError(err) || !errors.Is(err, context.Canceled) || IsRequestTimeoutError(err) || IsSendError(err) {
			t.Fatalf("cancel: %v", err)
		}
		if lag := returned.Sub(cancelled); lag > 100*time.Millisecond {
			t.Fatalf("returned %v after the cancel", lag)
		}

		// The same classification from a process, with the package-level API.
		if got := procs[2].do("rpc %s %d 1 3000", to, e2eFail); got != "err request mesh: command 7002 on "+to+": boom: r" {
			t.Fatalf("handler error in a process: %s", got)
		}
		if got := procs[2].do("rpc %s %d 0 300", driver.GetMyEndPoint(), e2eBlock); !strings.HasPrefix(got, "err timeout ") {
			t.Fatalf("timeout in a process: %s", got)
		}
	})

	t.Run("SendAndUSend", func(t *testing.T) {
		to := procs[0]
		if err := driver.Send(e2eCmd, to.addr, map[string]interface{}{"tag": "reliable"}); err != nil {
			t.Fatal(err)
		}
		b, err := CreateSendBytes(map[string]interface{}{"tag": "bytes"})
		if err != nil {
			t.Fatal(err)
		}
		if err := driver.Send(e2eCmd, to.addr, b); err != nil {
			t.Fatal(err)
		}
		if err := driver.Send(e2eRaw, to.addr, []byte("raw")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Second, func() bool {
			return to.count("CMD reliable") == 1 && to.count("CMD bytes") == 1 && to.count("RAW "+driver.GetMyEndPoint()+" raw") == 1
		}, "Send reaches the process")
		// USend is unreliable: on loopback it arrives, but a datagram may be
		// dropped by a busy kernel, so it gets three tries.
		for try := 0; ; try++ {
			if err := driver.USend(e2eCmd, to.addr, map[string]interface{}{"tag": "unreliable"}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for to.count("CMD unreliable") == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if to.count("CMD unreliable") > 0 {
				break
			}
			if try == 2 {
				t.Fatal("USend lost three times on loopback")
			}
			t.Logf("USend try %d lost", try)
		}
		// From a process to an in-process node, with the package-level API.
		if got := procs[1].do("send %s from-process", driver.GetMyEndPoint()); got != "ok" {
			t.Fatal(got)
		}
		eventually(t, 2*time.Second, func() bool { return log.count(driver.GetMyEndPoint(), "from-process") == 1 }, "Send from a process arrives")
		rawMu.Lock()
		defer rawMu.Unlock()
		if len(rawFrom) != 0 {
			t.Fatalf("raw handler got %v", rawFrom)
		}
	})

	t.Run("SharedDataValuesAndStatus", func(t *testing.T) {
		src := procs[2]
		start := time.Now()
		if got := src.do("shared-set e2e_rooms 7"); got != "true" {
			t.Fatalf("shared-set: %s", got)
		}
		src.do("value-set load 42")
		src.do("status %d", StatusTaken)
		others := []*procNode{procs[0], procs[1], procs[3], procs[4]}
		eventually(t, 2*time.Second+e2eSlack, func() bool {
			for _, n := range all {
				v, ok := n.GetSharedData("e2e_rooms")
				if !ok || v != 7 || GetInt(n.GetNodeValues(src.addr), "load") != 42 || !n.IsNodeTaken(src.addr) {
					return false
				}
			}
			for _, p := range others {
				if p.do("shared-get e2e_rooms") != "7 true" || p.do("value-get %s load", src.addr) != "42" || p.do("taken %s", src.addr) != "true" {
					return false
				}
			}
			return true
		}, "shared data, a node value and the taken status reach all 20 other nodes")
		t.Logf("seen by all after %v", time.Since(start))
		for range 50 {
			if got := driver.GetRandomNodeAddressByType("game"); got == src.addr || got == "" {
				t.Fatalf("GetRandomNodeAddressByType gave %q (the taken node is %s)", got, src.addr)
			}
		}
		if src.do("shared-get e2e_rooms") != "7 true" {
			t.Fatal("the writer does not see its own shared data")
		}
		src.do("status %d", StatusOnline)
	})

	// targets puts procs[3], procs[4] and procs[0] where SendMany with
	// limit 3 makes relays of them (the first of each third), and procs[1],
	// procs[2] inside shares.
	targets := []string{procs[3].addr}
	for _, n := range locals[:3] {
		targets = append(targets, n.GetMyEndPoint())
	}
	targets = append(targets, procs[1].addr)
	for _, n := range locals[3:5] {
		targets = append(targets, n.GetMyEndPoint())
	}
	targets = append(targets, procs[4].addr)
	for _, n := range locals[5:10] {
		targets = append(targets, n.GetMyEndPoint())
	}
	targets = append(targets, procs[2].addr, procs[0].addr)
	for _, n := range locals[10:] {
		targets = append(targets, n.GetMyEndPoint())
	}
	if len(targets) != 20 {
		t.Fatalf("%d targets", len(targets))
	}
	procByAddr := map[string]*procNode{}
	for _, p := range procs {
		procByAddr[p.addr] = p
	}
	received := func(addr, tag string) int {
		if p := procByAddr[addr]; p != nil {
			return p.count("CMD " + tag)
		}
		return log.count(addr, tag)
	}
	exactlyOnce := func(t *testing.T, tag string, skip string) {
		t.Helper()
		eventually(t, 5*time.Second, func() bool {
			for _, a := range targets {
				if a != skip && received(a, tag) != 1 {
					return false
				}
			}
			return true
		}, "every target has %q once", tag)
		// Nothing is in flight any more (SendMany returned after every hop
		// acknowledged); give late duplicates a moment to show.
		time.Sleep(200 * time.Millisecond)
		for _, a := range targets {
			if got := received(a, tag); a != skip && got != 1 {
				t.Fatalf("%s received %q %d times", a, tag, got)
			}
		}
	}

	t.Run("SendMany", func(t *testing.T) {
		start := time.Now()
		if err := driver.SendMany(e2eCmd, targets, map[string]interface{}{"tag": "many-1"}, 3); err != nil {
			t.Fatal(err)
		}
		t.Logf("SendMany to 20 nodes (5 processes) returned after %v", time.Since(start))
		exactlyOnce(t, "many-1", "")
	})

	t.Run("SendManyKilledRelay", func(t *testing.T) {
		dead := procs[3]
		dead.kill()
		<-dead.readDone
		start := time.Now()
		err := driver.SendMany(e2eCmd, targets, map[string]interface{}{"tag": "many-2"}, 3)
		var fe *FanoutError
		if !errors.As(err, &fe) || !IsSendError(err) || len(fe.Failed) != 1 || fe.Failed[0] != dead.addr {
			t.Fatalf("SendMany with a killed relay: %v", err)
		}
		t.Logf("SendMany with a killed relay returned after %v: %v", time.Since(start), err)
		exactlyOnce(t, "many-2", dead.addr)
	})

	t.Run("KilledNode", func(t *testing.T) {
		victim := procs[4]
		// Two RPCs wait in the victim's handler: one from an in-process
		// node, one from a process (whose retryTimeout comes from
		// DIARKIS_RETRY_TIMEOUT).
		errc := make(chan error, 1)
		go func() { _, err := driver.SendRPC(e2eBlock, victim.addr, nil); errc <- err }()
		procErr := make(chan string, 1)
		go func() { procErr <- procs[0].do("rpc %s %d 0 10000", victim.addr, e2eBlock) }()
		eventually(t, 3*time.Second, func() bool {
			return victim.count("BLOCK "+driver.GetMyEndPoint()) == 1 && victim.count("BLOCK "+procs[0].addr) == 1
		}, "both RPCs are in the victim's handler")
		victim.kill()
		killed := time.Now()
		bound := e2eRetryTimeout*time.Millisecond + time.Second
		select {
		case err := <-errc:
			if !IsSendError(err) || IsRequestTimeoutError(err) {
				t.Fatalf("pending RPC to a killed node: %v", err)
			}
			if el := time.Since(killed); el > bound {
				t.Fatalf("pending RPC failed after %v, bound %v", el, bound)
			}
			t.Logf("pending RPC failed %v after the kill: %v", time.Since(killed), err)
		case <-time.After(bound + e2eSlack):
			t.Fatalf("pending RPC still waiting %v after the kill", bound+e2eSlack)
		}
		select {
		case got := <-procErr:
			if !strings.HasPrefix(got, "err send ") {
				t.Fatalf("pending RPC from a process: %s", got)
			}
			if el := time.Since(killed); el > bound+e2eSlack {
				t.Fatalf("pending RPC from a process failed after %v, bound %v", el, bound)
			}
			t.Logf("pending RPC from a process failed %v after the kill", time.Since(killed))
		case <-time.After(bound + e2eSlack):
			t.Fatalf("pending RPC from a process still waiting %v after the kill", bound+e2eSlack)
		}

		// An RPC to the dead address is a send error, not a timeout.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := driver.SendRPCWithContext(ctx, e2eEcho, victim.addr, nil); !IsSendError(err) {
			t.Fatalf("RPC to a dead node: %v", err)
		}

		// MARS removes both killed nodes (-remove-after 3s); every view follows.
		gone := []string{victim.addr, procs[3].addr}
		eventually(t, 3*time.Second+time.Second+2*e2eSlack, func() bool {
			for _, n := range all {
				for _, a := range gone {
					if n.GetNode(a) != nil || n.IsNodeOnline(a) || slices.Contains(n.GetNodeAddressesByType("game"), a) {
						return false
					}
				}
			}
			return true
		}, "the killed nodes leave every in-process view")
		t.Logf("killed nodes gone from the views %v after the kill", time.Since(killed))
		for _, p := range procs[:3] {
			eventually(t, 2*time.Second, func() bool {
				nodes := p.do("nodes")
				return !strings.Contains(nodes, victim.addr) && !strings.Contains(nodes, procs[3].addr)
			}, "the killed nodes leave %s's view", p.name)
		}
		for range 50 {
			if got := driver.GetRandomNodeAddressByType("game"); got == "" || slices.Contains(gone, got) {
				t.Fatalf("GetRandomNodeAddressByType gave %q", got)
			}
		}
	})
	t.Logf("TestE2E body took %v", time.Since(began))
}

// freeUDPPort finds a UDP port free right now on 127.0.0.1.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}
