package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
	"github.com/marsmesh/marsmesh/internal/testport"
	"github.com/marsmesh/marsmesh/mesh"
)

// findChromium returns the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where the browser test keeps its screenshots:
// $MARSMESH_ARTIFACTS, or marsmesh-artifacts in the temp directory.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("MARSMESH_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "marsmesh-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func freePort(t *testing.T) int { return testport.Free(t) }

type proc struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
}

func startProc(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: &syncbuf.Buffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("%s %v stderr:\n%s", filepath.Base(bin), args, p.stderr.String())
		}
	})
	return p
}

var startedAddr = regexp.MustCompile(`msg="node started" addr=(\S+)`)

// TestDashboardInBrowser starts MARS and three nodes as processes, loads
// the dashboard in headless Chromium, checks the three nodes appear, kills
// one and checks the page shows it offline without a reload.
func TestDashboardInBrowser(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		t.Skip("no chromium found (install Debian's chromium: apt-get install -y chromium; or set CHROMIUM=/path): dashboard browser test skipped")
	}
	if testing.Short() {
		t.Skip("-short: the dashboard browser test builds and starts processes")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "github.com/marsmesh/marsmesh/cmd/mars-server", "github.com/marsmesh/marsmesh/cmd/node")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	marsPort, adminPort := freePort(t), freePort(t)
	env := []string{"DIARKIS_MARS_PORT=" + strconv.Itoa(marsPort), "DIARKIS_PORT=0", "DIARKIS_RETRY_INTERVAL=200", "DIARKIS_RETRY_TIMEOUT=1000"}
	adminURL := fmt.Sprintf("http://127.0.0.1:%d/", adminPort)
	startProc(t, env, filepath.Join(bin, "mars-server"), "-admin", fmt.Sprintf("127.0.0.1:%d", adminPort),
		"-offline-after", "1s", "-remove-after", "60s", "-lease-hold", "-1s") // no earlier MARS: no claim hold
	var nodes []*proc
	for _, spec := range [][]string{
		{"-type", "game", "-role", "UDP", "-endpoint", "203.0.113.10:7000", "-value", "capacity=100"},
		{"-type", "game", "-role", "UDP", "-endpoint", "203.0.113.11:7000", "-value", "capacity=80"},
		{"-type", "lobby", "-role", "HTTP", "-value", "region=eu", "-subscribe", "chat.>"},
	} {
		nodes = append(nodes, startProc(t, env, filepath.Join(bin, "node"), append([]string{"run"}, spec...)...))
	}
	addrs := make([]string, len(nodes))
	for i, p := range nodes {
		deadline := time.Now().Add(30 * time.Second)
		for addrs[i] == "" {
			if m := startedAddr.FindStringSubmatch(p.stderr.String()); m != nil {
				addrs[i] = m[1]
			} else if time.Now().After(deadline) {
				t.Fatalf("node %d did not log its address:\n%s", i, p.stderr.String())
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	// A node in this process calls the echo RPC of the three, so that
	// nodes have sessions with each other (the peer matrix) and traffic
	// (the sparklines).
	caller := startCaller(t, marsPort, addrs)

	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(chrome),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 768),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()

	// waitFor polls a JavaScript condition in the page.
	waitFor := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
				t.Fatalf("timed out waiting for %s; the page shows:\n%s", what, text)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	rowStatus := func(addr, status string) string {
		return fmt.Sprintf(`!!document.querySelector('tr.node[data-addr=%q][data-status=%q]')`, addr, status)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(adminURL)); err != nil {
		t.Fatalf("loading %s: %v", adminURL, err)
	}
	for _, a := range addrs {
		waitFor(a+" online", rowStatus(a, "online"))
	}
	waitFor("rates of the nodes", `[...document.querySelectorAll('tr.node')].length === 4 && // the three and the caller
		[...document.querySelectorAll('tr.node td')].some(td => /^\d+\.\d+ \/ \d+\.\d+$/.test(td.textContent))`)
	dir := artifactDir(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot saved: %s", path)
		fmt.Fprintf(os.Stderr, "dashboard screenshot: %s\n", path)
	}
	waitFor("sparklines with history", fmt.Sprintf(`[...document.querySelectorAll('tr.node svg.spark')].filter(s => +s.dataset.points >= 2).length >= 3 &&
		!!document.querySelector('tr.node[data-addr=%q] svg.spark polyline.rpcs')`, caller))
	waitFor("the MARS replica in use", fmt.Sprintf(`(() => { const r = document.querySelector('tr.replica[data-state="in use"]');
		return !!r && r.textContent.includes(%q) && r.textContent.includes("(this one)"); })()`, fmt.Sprintf("127.0.0.1:%d", marsPort)))
	waitFor("the peer matrix", fmt.Sprintf(`(() => { const row = document.querySelector('tr.peerrow[data-addr=%q]');
		return !!row && %s.every(a => { const td = row.querySelector('td.peer[data-to="' + a + '"]'); return !!td && /ms/.test(td.textContent) && /rtx/.test(td.textContent); }); })()`,
		caller, jsList(addrs)))
	waitFor("the key-value panel", `(() => { const r = document.querySelector('tr.kvkey[data-key="room/1"]');
		const b = document.querySelector('tr.kvkey[data-key="blob"]');
		return !!r && r.textContent.includes("alpha") && !!b && b.textContent.includes("(binary)") && /\d+ s/.test(b.textContent); })()`)
	waitFor("the pub-sub panel", `(() => { const r = document.querySelector('section.app div.topics tr.topic[data-pattern="chat.>"]');
		const note = document.querySelector('section.app div.topics .note');
		return !!r && r.dataset.subscribers === "1" && !!note && /Published [1-9][0-9.]*\/s/.test(note.textContent); })()`)
	waitFor("the lease panel", fmt.Sprintf(`!!document.querySelector('tr.lease[data-key="room/1"][data-holder=%q]')`, caller))
	shot("dashboard-online.png")

	// Mark the page: a reload would lose the mark.
	updates, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__marsmeshMark = 42; document.body.dataset.updates`))
	if err != nil {
		t.Fatal(err)
	}
	victim := nodes[1]
	victim.cmd.Process.Kill()
	victim.cmd.Wait()
	waitFor(addrs[1]+" offline", rowStatus(addrs[1], "offline"))
	waitFor("the offline list", fmt.Sprintf(`!!document.querySelector('tr.recent[data-addr=%q]')`, addrs[1]))
	mark, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__marsmeshMark || 0`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.updates`))
	if err != nil {
		t.Fatal(err)
	}
	if mark != 42 {
		t.Fatal("the page was reloaded (its mark is gone); it must update in place")
	}
	if a, _ := strconv.Atoi(after); a <= mustAtoi(updates) {
		t.Errorf("updates went from %s to %s", updates, after)
	}
	for _, i := range []int{0, 2} {
		waitFor(addrs[i]+" still online", rowStatus(addrs[i], "online"))
	}
	shot("dashboard-offline.png")
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type game", "type lobby", "capacity=100", "203.0.113.10:7000", "HTTP", "region=\"eu\"",
		"config/motd", "hello"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page lacks %q:\n%s", want, text)
		}
	}
}

// startCaller starts a node in this process that calls the echo RPC (1)
// of every node in addrs every 50 ms until the test ends, and returns its
// address.
func startCaller(t *testing.T, marsPort int, addrs []string) string {
	t.Helper()
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", strconv.Itoa(marsPort)
	cfg.RetryInterval, cfg.RetryTimeout = 200, 1000
	n, err := mesh.New(cfg, mesh.WithType("caller"), mesh.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	// Keys and a lease for the dashboard's key-value and lease panels.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	<-n.Ready()
	for _, kv := range [][2]string{{"room/1", "alpha"}, {"room/2", "beta"}, {"config/motd", "hello"}} {
		if _, err := n.KV().Put(ctx, kv[0], []byte(kv[1]), mesh.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.KV().Put(ctx, "blob", []byte{0xff, 0xfe}, mesh.PutOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Claim(ctx, "room/1", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(5 * time.Minute); time.Now().Before(end); {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, a := range addrs {
				n.SendRPC(1, a, []byte("ping"))
			}
			n.Publish(context.Background(), "chat.eu", []byte("hello")) // the lobby subscribes to chat.>
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		n.Shutdown()
	})
	return n.GetMyEndPoint()
}

// jsList writes strings as a JavaScript array literal.
func jsList(l []string) string {
	b, _ := json.Marshal(l)
	return string(b)
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
