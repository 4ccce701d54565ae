package main

import (
	"context"
	"fmt"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
	"github.com/marsmesh/marsmesh/internal/testport"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/leaktest"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

func freePort(t *testing.T) int { return testport.Free(t) }

func TestHelp(t *testing.T) {
	var out syncbuf.Buffer
	if code := run(context.Background(), []string{"-h"}, &out); code != 0 {
		t.Fatalf("-h exit %d", code)
	}
	for _, f := range []string{"-config", "-offline-after", "-remove-after", "-data"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("usage lacks %s:\n%s", f, out.String())
		}
	}
}

func TestBadInvocationsExitNonZeroWithOneLine(t *testing.T) {
	dir := t.TempDir()
	badJSON := filepath.Join(dir, "bad.json")
	os.WriteFile(badJSON, []byte(`{"marsPort": "x",}`), 0o644)
	badRange := filepath.Join(dir, "range.json")
	os.WriteFile(badRange, []byte(`{"marsPort": 70000, "retryInterval": 1}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-config", filepath.Join(dir, "missing.json")}, "cannot read"},
		{[]string{"-config", badJSON}, "invalid JSON"},
		{[]string{"-config", badRange}, "marsPort"},
		{[]string{"-offline-after", "5s", "-remove-after", "1s"}, "-remove-after"},
		{[]string{"-log-level", "loud"}, "-log-level"},
		{[]string{"stray"}, "unexpected argument"},
	} {
		var out syncbuf.Buffer
		code := run(context.Background(), tc.args, &out)
		text := strings.TrimRight(out.String(), "\n")
		if code == 0 || strings.Count(text, "\n") != 0 || !strings.Contains(text, tc.want) ||
			!strings.HasPrefix(text, "mars-server: ") {
			t.Errorf("%v: exit %d, stderr %q (want one line with %q)", tc.args, code, text, tc.want)
		}
	}
	var out syncbuf.Buffer
	if code := run(context.Background(), []string{"-offline-after", "soon"}, &out); code != 2 {
		t.Errorf("bad flag value: exit %d", code)
	}
}

func TestPortInUse(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("DIARKIS_MARS_PORT", fmt.Sprint(c.LocalAddr().(*net.UDPAddr).Port))
	var out syncbuf.Buffer
	code := run(context.Background(), nil, &out)
	text := strings.TrimRight(out.String(), "\n")
	if code == 0 || strings.Contains(text, "\n") || !strings.Contains(text, "address already in use") {
		t.Fatalf("exit %d, stderr %q", code, text)
	}
}

func TestServesUntilCancelled(t *testing.T) {
	port := freePort(t)
	t.Setenv("DIARKIS_MARS_ADDR", "127.0.0.1")
	t.Setenv("DIARKIS_MARS_PORT", fmt.Sprint(port))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-data", t.TempDir()}, &out) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), fmt.Sprintf("addr=127.0.0.1:%d", port)) {
		if time.Now().After(deadline) {
			t.Fatalf("no listening log line:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}

	var cl atomic.Pointer[mars.Client]
	tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{
		CloseTimeout: 100 * time.Millisecond,
		OnMessage: func(from netip.AddrPort, kind byte, p []byte, reliable bool) {
			if c := cl.Load(); c != nil && mars.IsMarsKind(kind) {
				c.HandleMessage(from, kind, p, reliable)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := mars.NewClient(mars.ClientConfig{Transport: tr, MarsAddr: fmt.Sprintf("127.0.0.1:%d", port), Type: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	cl.Store(c)
	c.Start()
	select {
	case <-c.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no sync from mars-server")
	}
	if n, ok := c.View().Node(c.Addr()); !ok || n.Type != "probe" {
		t.Fatalf("not listed: %+v", n)
	}
	c.Close()
	tr.Close()

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mars-server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", freePort(t)))
	var out syncbuf.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "listening") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("did not start:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, out.String())
	}
}
