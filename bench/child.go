package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The cross-process suites run the server end of every system in child
// processes: this binary, re-executed with "-serve KIND ARGS..." (see
// serve.go). A child prints "READY <address>" on stdout when it serves,
// answers one-line requests on stdin, and exits when its stdin closes.
// Besides that, every child gets SIGKILL from the kernel when the thread
// that started it dies (Pdeathsig), and the parent kills and waits for
// every child it still has on return from main, on SIGINT/SIGTERM and on a
// panic of the main goroutine.

const (
	serveFlag      = "-serve"
	childReadyWait = 20 * time.Second // a child's time to print READY
	childStopWait  = 10 * time.Second // a child's time to exit after stdin closes
	childReplyWait = 30 * time.Second // a child's time to answer a request
)

var errChild = errors.New("child process")

// child is one running child process.
type child struct {
	name  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string // stdout lines; closed when stdout ends
	ready string      // what followed READY
	mu    sync.Mutex  // one request at a time
	once  sync.Once
	err   error
}

// children are the live children of this process, for killAll.
var children struct {
	sync.Mutex
	set map[*child]bool
}

// startChild starts this binary with -serve args; netns, when not empty,
// is a network namespace to run it in (through "ip netns exec"). It
// returns once the child printed READY.
func startChild(netns string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append([]string{exe, serveFlag}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &child{name: strings.Join(args, " "), cmd: cmd, in: in, lines: make(chan string, 16)}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w %q: %v", errChild, c.name, err)
	}
	children.Lock()
	if children.set == nil {
		children.set = map[*child]bool{}
	}
	children.set[c] = true
	children.Unlock()
	go func() { // owned by the child: ends when its stdout closes
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	line, err := c.next(childReadyWait)
	if err == nil && !strings.HasPrefix(line, "READY") {
		err = fmt.Errorf("%w %q: said %q instead of READY", errChild, c.name, line)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.ready = strings.TrimSpace(strings.TrimPrefix(line, "READY"))
	return c, nil
}

// next returns the child's next stdout line, waiting at most d.
func (c *child) next(d time.Duration) (string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l, ok := <-c.lines:
		if !ok {
			return "", fmt.Errorf("%w %q exited", errChild, c.name)
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("%w %q: no answer in %v", errChild, c.name, d)
	}
}

// ask sends one request line and returns the answer line.
func (c *child) ask(req string, d time.Duration) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, req+"\n"); err != nil {
		return "", fmt.Errorf("%w %q: %v", errChild, c.name, err)
	}
	return c.next(d)
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// Close closes the child's stdin (it shuts down and exits), waits for it
// at most childStopWait, then kills it; either way it is waited for.
func (c *child) Close() error {
	c.once.Do(func() {
		c.in.Close()
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		t := time.NewTimer(childStopWait)
		defer t.Stop()
		select {
		case c.err = <-done:
		case <-t.C:
			c.cmd.Process.Kill()
			<-done
			c.err = fmt.Errorf("%w %q did not exit in %v; killed", errChild, c.name, childStopWait)
		}
		for range c.lines { // let the reader goroutine finish
		}
		children.Lock()
		delete(children.set, c)
		children.Unlock()
	})
	return c.err
}

// kill ends the child at once and waits for it.
func (c *child) kill() {
	c.cmd.Process.Kill()
	c.Close()
}

// liveChildren is the number of children not yet waited for.
func liveChildren() int {
	children.Lock()
	defer children.Unlock()
	return len(children.set)
}

// killAll kills and waits for every live child.
func killAll() {
	children.Lock()
	var cs []*child
	for c := range children.set {
		cs = append(cs, c)
	}
	children.Unlock()
	for _, c := range cs {
		c.kill()
	}
}

// guardChildren kills every child (and runs cleanup, e.g. removing network
// namespaces) on SIGINT or SIGTERM, then exits; the returned func stops
// the guard.
func guardChildren(cleanup func()) func() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			logf("%v: stopping child processes", s)
			killAll()
			cleanup()
			os.Exit(130)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}
