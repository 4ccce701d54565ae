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
	"syscall"
	"testing"
	"time"
)

// Server is a running etcd.
type Server struct {
	// Endpoint is its client URL, "http://127.0.0.1:PORT".
	Endpoint string
	bin      string
	dataDir  string
	peer     string
	out      *syncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	done   bool // Stop was called
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
		s, err := newServer(bin, filepath.Join(dir, fmt.Sprintf("data%d", attempt)))
		if err == nil {
			err = s.run()
		}
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

func newServer(bin, dataDir string) (*Server, error) {
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	return &Server{
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d", cport),
		peer:     fmt.Sprintf("http://127.0.0.1:%d", pport),
		bin:      bin,
		dataDir:  dataDir,
		out:      &syncBuffer{},
	}, nil
}

// run starts the etcd process and waits until it is healthy.
func (s *Server) run() error {
	cmd := exec.Command(s.bin,
		"--name", "test",
		"--data-dir", s.dataDir,
		"--listen-client-urls", s.Endpoint, "--advertise-client-urls", s.Endpoint,
		"--listen-peer-urls", s.peer, "--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "test="+s.peer,
		"--log-level", "error",
	)
	// One core at most: the tests share a small machine.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "ETCD_UNSUPPORTED_ARCH=")
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			return fmt.Errorf("etcd exited: %s", s.out.String())
		default:
		}
		if resp, err := hc.Get(s.Endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("etcd not healthy after 30 s: %s", s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills etcd (SIGKILL) and waits for it to exit. It is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	s.Kill()
}

// Kill kills etcd (SIGKILL), as a crash would, and waits for it to exit;
// its data stays for Restart.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	cmd.Process.Kill()
	<-exited
}

// Restart starts etcd again after Kill, on the same ports and data
// directory, and waits until it is healthy.
func (s *Server) Restart() error {
	s.mu.Lock()
	exited, done := s.exited, s.done
	s.mu.Unlock()
	if done {
		return fmt.Errorf("etcdtest: Restart after Stop")
	}
	select {
	case <-exited:
	default:
		return fmt.Errorf("etcdtest: Restart while etcd runs (Kill it first)")
	}
	if err := s.run(); err != nil {
		return err
	}
	s.mu.Lock()
	done = s.done
	s.mu.Unlock()
	if done { // the test ended meanwhile
		s.Kill()
	}
	return nil
}

// Pause stops etcd (SIGSTOP) as a hung or descheduled process would be:
// its connections stay open and nothing is answered until Resume.
func (s *Server) Pause() error { return s.process().Signal(syscall.SIGSTOP) }

// Resume lets a paused etcd run again (SIGCONT).
func (s *Server) Resume() error { return s.process().Signal(syscall.SIGCONT) }

func (s *Server) process() *os.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process
}

// Pid is the etcd process's id.
func (s *Server) Pid() int { return s.process().Pid }

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
