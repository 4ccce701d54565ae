package mesh

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// roomProc is a `node run -type room` process (cmd/node) with its admin
// endpoint.
type roomProc struct {
	name, admin string
	cmd         *exec.Cmd
	stderr      *lockedBuffer
	exited      chan struct{}
}

// buildNodeBinary builds cmd/node into a temporary directory.
func buildNodeBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "go"
	}
	bin := filepath.Join(t.TempDir(), "node")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/marsmesh/marsmesh/cmd/node").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/node: %v\n%s", err, out)
	}
	return bin
}

// startRoomProc runs bin as a room node of weight w and waits until it has
// joined the cluster; its admin address comes from its log.
func startRoomProc(t *testing.T, bin, name string, marsPort uint16, w int) *roomProc {
	t.Helper()
	p := &roomProc{name: name, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "-type", "room", "-value", fmt.Sprintf("weight=%d", w),
		"-admin", "127.0.0.1:0", "-log-format", "json")
	p.cmd.Env = childEnv("DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", marsPort),
		"DIARKIS_PORT=0", "DIARKIS_RETRY_INTERVAL=200", fmt.Sprintf("DIARKIS_RETRY_TIMEOUT=%d", e2eRetryTimeout))
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	joined := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			p.stderr.Write(append(sc.Bytes(), '\n'))
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			switch l.Msg {
			case "admin endpoint listening":
				p.admin = l.Addr
			case "joined the cluster":
				once.Do(func() { close(joined) })
			}
		}
	}()
	go func() {
		p.cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	})
	select {
	case <-joined:
	case <-p.exited:
		t.Fatalf("%s exited before it joined:\n%s", name, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not join in 30 s:\n%s", name, p.stderr)
	}
	return p
}

// ownerOf asks the process's /v1/owners who owns key.
func (p *roomProc) ownerOf(key, weight string) (owner string, online int, err error) {
	resp, err := http.Get(fmt.Sprintf("http://%s/v1/owners?type=room&key=%s&weight=%s", p.admin, key, weight))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var o struct {
		Owner  string `json:"owner"`
		Online int    `json:"online"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("%s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&o)
	return o.Owner, o.Online, err
}

// processesAgree waits until every room process names, for each of keys
// keys, the owner the test's node names (plain and weighted), with count
// room nodes online.
func processesAgree(t *testing.T, n *Node, procs []*roomProc, count, keys int) {
	t.Helper()
	var last string
	agreeing := func() bool {
		if len(n.GetNodeAddressesByType("room")) != count {
			last = "the test's node does not list every room node"
			return false
		}
		for _, p := range procs {
			for i := range keys {
				for _, w := range []string{"", "weight"} {
					var opts []OwnerOption
					if w != "" {
						opts = append(opts, WeightedBy(w))
					}
					want, _ := n.Owner("room", ownerKey(i), opts...)
					got, online, err := p.ownerOf(ownerKey(i), w)
					if err != nil || online != count || got != want {
						last = fmt.Sprintf("%s: owner of %s (weight %q) %q, online %d, %v; the test's node says %s",
							p.name, ownerKey(i), w, got, online, err, want)
						return false
					}
				}
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !agreeing(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the room processes do not agree with the test's node after 30 s; last: %s", last)
		}
	}
}

// End to end over loopback: five room node processes (cmd/node) of
// different weights agree with the test's node on the owner of every key,
// plain and weighted; RPCs routed to owners (SendRPCToOwner) all succeed
// while one owner drains on SIGTERM and leaves (ErrDraining answers go to
// the next owner), and the four left agree again.
func TestE2EOwnerRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with processes; skipped with -short")
	}
	mars := startMarsServer(t, buildMarsServer(t))
	bin := buildNodeBinary(t)
	var rooms []*roomProc
	for i := range 5 {
		rooms = append(rooms, startRoomProc(t, bin, fmt.Sprintf("room%d", i), mars.port, 1+i%3))
	}
	cfg := testConfig(mars.port)
	cfg.RetryTimeout = e2eRetryTimeout
	n, err := New(cfg, WithType("client"), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	if err := n.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	processesAgree(t, n, rooms, 5, 200)

	const cmdEcho = 1 // cmd/node's echo RPC
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := ownerKey((g*7919 + i) % 5000)
				var opts []OwnerOption
				if i%2 == 1 {
					opts = append(opts, WeightedBy("weight"))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				resp, err := n.SendRPCToOwner(ctx, "room", key, cmdEcho, []byte(key), opts...)
				cancel()
				if err == nil && string(resp) != key {
					err = fmt.Errorf("echo of %s answered %q", key, resp)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	waitCalls := func(more int64) {
		at := ok.Load() + failed.Load()
		eventually(t, 60*time.Second, func() bool { return ok.Load()+failed.Load() >= at+more }, "%d more calls", more)
	}
	waitCalls(500)

	drainer := rooms[2]
	drainer.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-drainer.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit after SIGTERM:\n%s", drainer.name, drainer.stderr)
	}
	if !drainer.cmd.ProcessState.Success() {
		t.Fatalf("%s: %v\n%s", drainer.name, drainer.cmd.ProcessState, drainer.stderr)
	}
	waitCalls(500)
	rest := slices.Delete(slices.Clone(rooms), 2, 3)
	processesAgree(t, n, rest, 4, 200)
	waitCalls(200)
	close(stop)
	wg.Wait()

	t.Logf("%d calls answered, %d failed, %d sent again to the next owner after ErrDraining", ok.Load(), failed.Load(), n.own.retries.Load())
	if e := firstErr.Load(); e != nil {
		t.Fatalf("%d calls failed while an owner drained; first: %v", failed.Load(), *e)
	}
}
