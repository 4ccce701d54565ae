package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/syncbuf"
)

func TestVersionFlag(t *testing.T) {
	var out, errb syncbuf.Buffer
	old := stdout
	stdout = &out
	defer func() { stdout = old }()
	if code := run(context.Background(), []string{"-version"}, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	line := strings.TrimSpace(out.String())
	if !strings.HasPrefix(line, "mars-server github.com/marsmesh/marsmesh ") || !strings.Contains(line, "revision ") {
		t.Errorf("-version printed %q", line)
	}
}

// TestUsageAndConfigErrorsExit2 checks the exit code node uses for the
// same mistakes: 2, with one line on stderr.
func TestUsageAndConfigErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"marsPrt": 1}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-no-such-flag"}, "mars-server: flag provided but not defined: -no-such-flag (see 'mars-server -h')"},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"-log-format", "xml"}, `-log-format "xml": want json or text`},
		{[]string{"-log-level", "loud"}, `-log-level "loud"`},
		{[]string{"-config", bad}, `unknown key "marsPrt" (did you mean "marsPort"?)`},
		{[]string{"-admin", "nope"}, `adminAddress="nope": not host:port`},
	} {
		var errb syncbuf.Buffer
		code := run(context.Background(), tc.args, &errb)
		text := strings.TrimRight(errb.String(), "\n")
		if code != 2 || strings.Contains(text, "\n") || !strings.Contains(text, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, code, text, tc.want)
		}
	}
}

func TestAdminEndpointAndJSONLogs(t *testing.T) {
	port := freePort(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := l.Addr().String()
	l.Close()
	t.Setenv("DIARKIS_MARS_ADDR", "127.0.0.1")
	t.Setenv("DIARKIS_MARS_PORT", fmt.Sprint(port))
	t.Setenv("DIARKIS_ADMIN_ADDRESS", admin) // the configuration key; -admin would override it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-log-format", "json"}, &out) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), `"msg":"mars-server listening"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no listening log line:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	for path, want := range map[string]string{
		"/healthz":   "ok",
		"/readyz":    "ready",
		"/v1/nodes":  `"apps": []`,
		"/v1/shared": `"apps": []`,
		"/v1/status": `"role": "mars"`,
		"/metrics":   "marsmesh_mars_reports_total",
		"/":          "marsmesh cluster",
	} {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: HTTP %d %.200q, want %q", path, resp.StatusCode, b, want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}

// TestAdminPortTaken: with its admin port taken, mars-server fails before
// it listens for nodes.
func TestAdminPortTaken(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("DIARKIS_MARS_PORT", fmt.Sprint(freePort(t)))
	var errb syncbuf.Buffer
	code := run(context.Background(), []string{"-admin", l.Addr().String()}, &errb)
	if code != 1 || !strings.Contains(errb.String(), "mars-server: admin endpoint: "+l.Addr().String()+" is in use") ||
		strings.Contains(errb.String(), "mars-server listening") {
		t.Errorf("exit %d, stderr %q; want exit 1 and the port in use, before listening", code, errb.String())
	}
}
