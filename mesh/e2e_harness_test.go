package mesh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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

	"github.com/marsmesh/marsmesh/internal/testport"
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
	guardFor := 3 * time.Minute
	if os.Getenv("MESH_PUBSUB_E2E") == "full" {
		guardFor = 20 * time.Minute // the full-size pub-sub run
	}
	guard := time.AfterFunc(guardFor, func() { os.Exit(3) })
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
	helperEmit = emit
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
	OnSendFailure(func(addr string, err error) { emit("SENDFAIL %s %s", addr, strings.ReplaceAll(err.Error(), " ", "_")) })
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
	if os.Getenv(e2ePubsubTermEnv) != "" {
		defer drainOnTerm(emit)() // pubsub_e2e_test.go
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
	if r, ok := pubsubHelperCommand(f); ok { // pubsub_e2e_test.go
		return r
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

// spawnMars starts bin on a loopback port, its stderr in p.log; it is
// killed at the test's end. exited closes when the process ends.
func spawnMars(t *testing.T, bin string, port uint16, args []string) (p *marsProcess, exited <-chan struct{}) {
	t.Helper()
	p = &marsProcess{cmd: exec.Command(bin, args...), port: port, log: &lockedBuffer{}}
	p.cmd.Env = childEnv("DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", port))
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-done
	})
	return p, done
}

// tryMarsServer starts one mars-server; it returns nil and whether the
// port was taken if it did not start.
func tryMarsServer(t *testing.T, bin string, args []string) (p *marsProcess, portInUse bool) {
	t.Helper()
	port := freeUDPPort(t)
	p, exited := spawnMars(t, bin, port, args)
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
// mustStartNode is startProcNode that fails the test if the process does
// not start, and stops it when the test ends.
func mustStartNode(t *testing.T, name string, marsPort uint16, cfgPath, typ string, env ...string) *procNode {
	t.Helper()
	p, err := startProcNode(t, name, marsPort, cfgPath, typ, env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

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
		case strings.HasPrefix(line, "CMD "), strings.HasPrefix(line, "RAW "), strings.HasPrefix(line, "BLOCK "),
			strings.HasPrefix(line, "PS "), strings.HasPrefix(line, "PSDONE "), strings.HasPrefix(line, "DRAIN "),
			strings.HasPrefix(line, "SENDFAIL "):
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

// freeUDPPort finds a UDP port free right now on 127.0.0.1.
func freeUDPPort(t *testing.T) uint16 { return uint16(testport.Free(t)) }
