// Package etcdtest starts a real etcd server for tests: the `etcd` binary
// (Debian package etcd-server; .ci/run installs it) on free loopback ports
// with a temporary data directory. Tests skip, saying why, when the
// binary is missing.
package etcdtest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Server is a running etcd.
type Server struct {
	// Endpoint is its client URL, "http://127.0.0.1:PORT".
	Endpoint string
	cmd      *exec.Cmd
	out      *syncBuffer
	exited   chan struct{}
	once     sync.Once
}

// Binary returns the path of the etcd binary, or "" when there is none.
func Binary() string {
	if p := os.Getenv("ETCD_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return ""
	}
	return p
}

// Start starts etcd for the test and stops it (and removes its data) when
// the test ends. It skips the test when no etcd binary is installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("etcd binary not found (apt-get install etcd-server, or set ETCD_BIN): skipping the test that needs a real etcd")
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		s, err := start(bin, dir, attempt)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		if attempt == 2 {
			t.Fatalf("etcd did not start: %v", err)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(bin, dir string, attempt int) (*Server, error) {
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	cmd := exec.Command(bin,
		"--name", "test",
		"--data-dir", filepath.Join(dir, fmt.Sprintf("data%d", attempt)),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer,
		"--log-level", "error",
	)
	// One core at most: the tests share a small machine.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "ETCD_UNSUPPORTED_ARCH=")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s := &Server{Endpoint: client, cmd: cmd, out: out, exited: exited}
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("etcd exited: %s", out.String())
		default:
		}
		if resp, err := hc.Get(client + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("etcd not healthy after 30 s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills etcd (SIGKILL) and waits for it to exit. It is idempotent.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.cmd.Process.Kill()
		<-s.exited
	})
}

// Pid is the etcd process's id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Output is what etcd printed so far.
func (s *Server) Output() string { return s.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
