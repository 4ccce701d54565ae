package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/syncbuf"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		var out, errb syncbuf.Buffer
		if code := realMain(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		line := strings.TrimSpace(out.String())
		if !strings.HasPrefix(line, "node github.com/marsmesh/marsmesh ") || !strings.Contains(line, "revision ") ||
			strings.Contains(line, "\n") {
			t.Errorf("%v printed %q, want one line: node <module> <version> revision <rev> ...", args, line)
		}
	}
	var out, errb syncbuf.Buffer
	if code := realMain(context.Background(), []string{"version", "extra"}, &out, &errb); code != exitUsage {
		t.Errorf("version extra: exit %d, want %d", code, exitUsage)
	}
}

func TestLogFormatAndAdminFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-log-format", "xml"}, `node run: -log-format "xml": want json or text (see 'node run -h')`},
		{[]string{"status", "-log-format", "yaml"}, `-log-format "yaml": want json or text`},
		{[]string{"healthcheck", "-addr", "127.0.0.1:1", "-log-format", "x"}, `-log-format "x"`},
		{[]string{"run", "-admin", "9090"}, `node run: -admin "9090": config: adminAddress="9090": not host:port`},
	} {
		var out, errb syncbuf.Buffer
		code := realMain(context.Background(), tc.args, &out, &errb)
		text := strings.TrimRight(errb.String(), "\n")
		if code != exitUsage || strings.Contains(text, "\n") || !strings.Contains(text, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, code, text, tc.want)
		}
	}
}

// TestRunAdminAndJSONLogs runs the node binary with -admin and
// -log-format json and reads its endpoint.
func TestRunAdminAndJSONLogs(t *testing.T) {
	srv := startMARS(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := l.Addr().String()
	l.Close()
	env := []string{"DIARKIS_MARS_PORT=" + strconv.Itoa(int(srv.Addr().Port())), "DIARKIS_PORT=0", "DIARKIS_NOT_A_KEY=1"}
	p := start(t, env, "run", "-type", "game", "-admin", adminAddr, "-log-format", "json")
	eventually(t, 30*time.Second, "the admin endpoint to log its address", func() bool {
		return strings.Contains(p.stderr.String(), `"msg":"admin endpoint listening"`)
	})
	first := strings.SplitN(p.stderr.String(), "\n", 2)[0]
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil {
		t.Fatalf("first log line is not JSON: %q", first)
	}
	if !strings.Contains(p.stderr.String(), "unknown environment variable DIARKIS_NOT_A_KEY") {
		t.Errorf("no warning about DIARKIS_NOT_A_KEY:\n%s", p.stderr.String())
	}
	eventually(t, 30*time.Second, "/readyz to answer ready", func() bool {
		code, body := httpGet("http://" + adminAddr + "/readyz")
		return code == 200 && strings.Contains(body, "ready")
	})
	code, body := httpGet("http://" + adminAddr + "/metrics")
	if code != 200 || !strings.Contains(body, "marsmesh_transport_datagrams_sent_total") {
		t.Errorf("/metrics: HTTP %d\n%.300s", code, body)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGINT", code)
	}
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
