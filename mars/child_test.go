package mars

import (
	"bufio"
	"fmt"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
	"github.com/marsmesh/marsmesh/internal/testport"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// Helpers for end-to-end tests: a real mars-server process, and a node in
// a child process (this test binary re-executed) that can be SIGKILLed.

const childEnv = "MARS_TEST_CHILD" // set: this process is a child node; value = MARS address

// childMain runs a node until it is killed (or for 2 minutes at most, so a
// lost child cannot linger). It prints "ADDR <mesh address>" once started.
func childMain() int {
	var cl atomic.Pointer[Client]
	tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{
		OnMessage: func(from netip.AddrPort, kind byte, p []byte, reliable bool) {
			if c := cl.Load(); c != nil && IsMarsKind(kind) {
				c.HandleMessage(from, kind, p, reliable)
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := NewClient(ClientConfig{
		Transport: tr, MarsAddr: os.Getenv(childEnv), App: os.Getenv("MARS_TEST_CHILD_APP"),
		Type: "child", Logger: quietLogger(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cl.Store(c)
	c.Start()
	fmt.Printf("ADDR %s\n", c.Addr())
	time.Sleep(2 * time.Minute)
	return 0
}

// childNode is a node running in a child process.
type childNode struct {
	cmd  *exec.Cmd
	addr string
}

func startChildNode(t *testing.T, marsAddr, app string) *childNode {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+marsAddr, "MARS_TEST_CHILD_APP="+app)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &childNode{cmd: cmd}
	t.Cleanup(func() { ch.kill() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child node did not start: %q %v", line, err)
	}
	ch.addr = strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
	return ch
}

func (c *childNode) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
}

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// marsServerBinary builds cmd/mars-server once per test run.
func marsServerBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "go" // exec reports that it is missing
		}
		build.dir, build.err = os.MkdirTemp("", "mars-e2e-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "mars-server")
		cmd := exec.Command(goBin, "build", "-o", build.bin, "github.com/marsmesh/marsmesh/cmd/mars-server")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

func removeBuildDir() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// marsProc is a mars-server process.
type marsProc struct {
	cmd  *exec.Cmd
	addr string
	out  *syncbuf.Buffer
}

// freeUDPPort finds a UDP port that is free right now on 127.0.0.1.
func freeUDPPort(t testing.TB) int { return testport.Free(t) }

// startMarsProc runs mars-server on 127.0.0.1:port and waits until it
// logs that it listens.
func startMarsProc(t testing.TB, port int, args ...string) *marsProc {
	t.Helper()
	cmd := exec.Command(marsServerBinary(t), args...)
	cmd.Env = append(os.Environ(), "DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", port))
	p := &marsProc{cmd: cmd, addr: fmt.Sprintf("127.0.0.1:%d", port), out: &syncbuf.Buffer{}}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.signal(syscall.SIGKILL) })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.out.String(), "mars-server listening") {
		if time.Now().After(deadline) {
			p.signal(syscall.SIGKILL)
			t.Fatalf("mars-server did not start:\n%s", p.out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p
}

// signal sends sig and waits for the process to exit; it returns the exit code.
func (p *marsProc) signal(sig os.Signal) int {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(sig)
		p.cmd.Wait()
	}
	return p.cmd.ProcessState.ExitCode()
}
