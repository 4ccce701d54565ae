package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/rudp"
)

// Helper processes of the cluster-key tests: the test binary runs itself
// with MARSMESH_KEYTEST set. They read the mesh configuration the way the
// node binary does, config.Load: DIARKIS_* variables and the JSON file
// named by MARSMESH_KEYTEST_CONFIG (may be empty).
const (
	keyTestRole    = "MARSMESH_KEYTEST"         // "probe" or "client"
	keyTestConfig  = "MARSMESH_KEYTEST_CONFIG"  // JSON configuration file, or ""
	keyTestTargets = "MARSMESH_KEYTEST_TARGETS" // probe: mesh addresses, comma-separated
	keyTestOwnMars = "MARSMESH_KEYTEST_OWN_MARS"
	keyTestType    = "MARSMESH_KEYTEST_TYPE" // probe: the node type it registers with
)

// TestKeyHelperProcess is not a test: it is the body of a helper process.
func TestKeyHelperProcess(t *testing.T) {
	switch os.Getenv(keyTestRole) {
	case "":
		t.Skip("the body of a helper process of the cluster-key tests")
	case "probe":
		os.Exit(probeMain(os.Stdout))
	case "client":
		os.Exit(clientMain(os.Stdin, os.Stdout))
	}
	t.Fatalf("unknown %s=%q", keyTestRole, os.Getenv(keyTestRole))
}

// probeResult is what a probe prints, one JSON line.
type probeResult struct {
	Joined      bool     // its node synced with the cluster's MARS
	RPCAnswers  int      // echo RPCs answered by the targets
	RPCErrors   int      // echo RPCs that failed
	Sends       int      // counter commands sent (Send and USend)
	Broadcasts  int      // SendMany broadcasts sent
	HealthOK    int      // health checks answered
	FirstErrors []string `json:",omitempty"`
}

// probeMain plays a process that wants in: its node registers at the
// cluster's MARS (as a node of type MARSMESH_KEYTEST_TYPE), then it calls the echo RPC
// of every target, sends them counter commands (reliable and unreliable)
// and a broadcast, and health-checks them. With MARSMESH_KEYTEST_OWN_MARS
// it sends from a second node synced with a MARS of its own (same keys),
// so that its RPCs really go out: a node that never synced refuses RPCs
// before sending anything.
func probeMain(stdout io.Writer) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.Load(os.Getenv(keyTestConfig))
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	targets := strings.Split(os.Getenv(keyTestTargets), ",")
	typ := os.Getenv(keyTestType)
	var res probeResult
	joiner, err := mesh.New(cfg, mesh.WithType(typ), mesh.WithLogger(log), mesh.WithSyncInterval(100*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	defer stopGuest(joiner, time.Second)
	joinBy := time.Now().Add(3 * time.Second) // checked at the end
	sender := joiner
	if os.Getenv(keyTestOwnMars) == "" {
		select { // the joiner sends: it must have synced
		case <-joiner.Ready():
		case <-time.After(time.Until(joinBy)):
		}
	} else {
		keys, _ := cfg.Keys()
		own, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: log, Transport: rudp.Config{Keys: keys}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			return 1
		}
		defer own.Close()
		c := cfg
		c.Port, c.MarsPort = "0", fmt.Sprint(own.Addr().Port())
		sender, err = mesh.New(c, mesh.WithType(typ), mesh.WithLogger(log), mesh.WithSyncInterval(100*time.Millisecond))
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			return 1
		}
		defer stopGuest(sender, time.Second)
		select {
		case <-sender.Ready():
		case <-time.After(10 * time.Second):
			fmt.Fprintln(os.Stderr, "probe: the probe's own MARS did not answer")
			return 1
		}
	}
	// The RPCs and health checks run at once (each waits up to 1 s).
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range targets {
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				want := fmt.Sprintf("probe %d", i)
				resp, err := sender.SendRPCWithContext(ctx, cmdEcho, addr, []byte(want))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && string(resp) == want:
					res.RPCAnswers++
				case err != nil && len(res.FirstErrors) < 3:
					res.FirstErrors = append(res.FirstErrors, err.Error())
					fallthrough
				default:
					res.RPCErrors++
				}
			}()
			if sender.Send(cmdCount, addr, map[string]interface{}{"add": 1000}) == nil {
				res.Sends++
			}
			if sender.USend(cmdCount, addr, map[string]interface{}{"add": 1000}) == nil {
				res.Sends++
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := sender.HealthCheck(ctx, addr); err == nil {
				mu.Lock()
				res.HealthOK++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-joiner.Ready():
		res.Joined = true
	case <-time.After(time.Until(joinBy)):
	}
	if sender.SendMany(cmdBroadcast, targets, map[string]interface{}{"text": "let me in"}, 1) == nil {
		res.Broadcasts++
	}
	// Give one-way messages time to leave before the process ends (the
	// test checks on the targets that none arrived).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	for _, addr := range targets {
		sender.HealthCheck(ctx, addr)
	}
	cancel()
	b, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(b))
	return 0
}

// clientResult is what the rotation client prints when told to stop.
type clientResult struct {
	OK, Failed  int
	PerTarget   map[string]int // answered RPCs by target
	FirstErrors []string       `json:",omitempty"`
}

// clientMain sends echo RPCs, one at a time, round robin to its current
// targets, from a guest node. Commands on stdin, one per line:
//
//	targets ADDR,ADDR,...  switch targets (none: empty list); answers "ok N"
//	                       once no RPC to an old target is in flight
//	count                  answers "count OK FAILED"
//	stop                   print the clientResult as JSON and exit
//
// It prints "ready" once its guest has synced with MARS.
func clientMain(stdin io.Reader, stdout io.Writer) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.Load(os.Getenv(keyTestConfig))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 2
	}
	cfg.Port = "0"
	g, err := mesh.New(cfg, mesh.AsGuest(), mesh.WithLogger(log), mesh.WithSyncInterval(200*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	defer stopGuest(g, 2*time.Second)
	select {
	case <-g.Ready():
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "client: MARS did not answer")
		return 1
	}
	fmt.Fprintln(stdout, "ready")

	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	res := clientResult{PerTarget: map[string]int{}}
	var targets []string
	acks := 0
	for i := 0; ; i++ {
		var line string
		var ok bool
		if len(targets) == 0 {
			line, ok = <-cmds
		} else {
			select {
			case line, ok = <-cmds:
			default:
				ok, line = true, ""
			}
		}
		switch {
		case !ok || line == "stop":
			b, _ := json.Marshal(res)
			fmt.Fprintln(stdout, string(b))
			return 0
		case line == "count":
			fmt.Fprintf(stdout, "count %d %d\n", res.OK, res.Failed)
			continue
		case strings.HasPrefix(line, "targets"):
			targets = strings.FieldsFunc(strings.TrimPrefix(line, "targets"), func(r rune) bool { return r == ',' || r == ' ' })
			acks++
			fmt.Fprintf(stdout, "ok %d\n", acks)
			continue
		}
		addr := targets[i%len(targets)]
		want := []byte(fmt.Sprintf("rpc %d", i))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := g.SendRPCWithContext(ctx, cmdEcho, addr, want)
		cancel()
		if err == nil && bytes.Equal(resp, want) {
			res.OK++
			res.PerTarget[addr]++
			continue
		}
		res.Failed++
		if err == nil {
			err = fmt.Errorf("%s answered %q to %q", addr, resp, want)
		}
		if len(res.FirstErrors) < 5 {
			res.FirstErrors = append(res.FirstErrors, time.Now().Format("15:04:05.000")+" "+addr+": "+err.Error())
		}
	}
}
