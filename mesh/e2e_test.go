package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2E drives mars-server and node processes; the harness (node
// processes, mars-server, helpers) is in e2e_harness_test.go.
func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with processes; skipped with -short")
	}
	began := time.Now()
	bin := buildMarsServer(t)
	t.Logf("built mars-server in %v", time.Since(began))
	// Short liveness so that a killed node leaves within seconds.
	mp := startMarsServer(t, bin, "-offline-after", "2s", "-remove-after", "3s")
	cfgPath := e2eConfig(t)

	// Five node processes (started together) and sixteen in-process nodes.
	procs := make([]*procNode, 5)
	startErrs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i], startErrs[i] = startProcNode(t, fmt.Sprintf("proc%d", i), mp.port, cfgPath, "game")
		}()
	}
	t.Cleanup(func() {
		// Stop the processes together (each shuts down gracefully).
		var wg sync.WaitGroup
		for _, p := range procs {
			if p != nil {
				wg.Add(1)
				go func() { defer wg.Done(); p.stop() }()
			}
		}
		wg.Wait()
	})
	cfg := testConfig(mp.port)
	cfg.RetryTimeout = e2eRetryTimeout
	newLocal := func(typ string) *Node {
		n, err := New(cfg, WithType(typ), WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		return n
	}
	driver := newLocal("driver")
	locals := make([]*Node, 15)
	for i := range locals {
		locals[i] = newLocal("game")
	}
	wg.Wait()
	if err := errors.Join(startErrs...); err != nil {
		t.Fatal(err)
	}
	all := append([]*Node{driver}, locals...)
	eventually(t, 10*time.Second, func() bool {
		for _, n := range all {
			if len(n.GetNodeAddresses(nil)) != 21 {
				return false
			}
		}
		return true
	}, "every in-process node lists all 21 nodes")
	for _, p := range procs {
		eventually(t, 5*time.Second, func() bool { return len(strings.Split(p.do("nodes"), ",")) == 21 }, "%s lists all 21 nodes", p.name)
	}
	t.Logf("cluster of 5 processes and 16 in-process nodes up after %v", time.Since(began))

	log := &msgLog{got: map[string]int{}}
	for _, n := range all {
		log.handle(t, n, e2eCmd)
	}
	var rawMu sync.Mutex
	var rawFrom []string
	driver.SetCommandHandler(e2eRaw, func(p []byte, from string) ([]byte, error) {
		rawMu.Lock()
		rawFrom = append(rawFrom, from+" "+string(p))
		rawMu.Unlock()
		return nil, nil
	})
	driver.HandleRPCWithContext(e2eBlock, func(ctx context.Context, _ []byte, _ string) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})

	t.Run("RPCEcho", func(t *testing.T) {
		to := procs[0].addr
		for _, size := range []int{0, 64, 1 << 20, MaxMessageSize} {
			req := bytes.Repeat([]byte{byte(size % 251)}, size)
			ctx, cancel := context.WithTimeout(context.Background(), DefaultRPCTimeout)
			if size == MaxMessageSize {
				// 10 MB through a race-instrumented process can take longer
				// than the 3 s default on a loaded machine; the time is logged.
				ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
			}
			start := time.Now()
			resp, err := driver.SendRPCWithContext(ctx, e2eEcho, to, req)
			cancel()
			if err != nil {
				t.Fatalf("%d bytes: %v", size, err)
			}
			if !bytes.Equal(resp, req) {
				t.Fatalf("%d bytes: echo of %d bytes differs", size, len(resp))
			}
			t.Logf("echo of %d bytes to a process: %v", size, time.Since(start))
		}
		start := time.Now()
		_, err := driver.SendRPC(e2eEcho, to, make([]byte, MaxMessageSize+1))
		if !IsSendError(err) || IsRequestError(err) || IsRequestTimeoutError(err) {
			t.Fatalf("10,000,001 bytes: %v", err)
		}
		if el := time.Since(start); el > 200*time.Millisecond {
			t.Fatalf("oversized RPC refused only after %v", el)
		}
		// Process to process, through the package-level API.
		if got := procs[0].do("rpc %s %d 64 3000", procs[1].addr, e2eEcho); got != "ok 64" {
			t.Fatalf("process-to-process RPC: %s", got)
		}
		if got := procs[0].do("rpc %s %d %d 3000", procs[1].addr, e2eEcho, MaxMessageSize+1); !strings.HasPrefix(got, "err send ") {
			t.Fatalf("process-to-process oversized RPC: %s", got)
		}
	})

	t.Run("RPCErrorsClassified", func(t *testing.T) {
		to := procs[1].addr
		_, err := driver.SendRPC(e2eFail, to, []byte("x"))
		var re *RemoteError
		if !IsRequestError(err) || IsSendError(err) || IsRequestTimeoutError(err) || !errors.As(err, &re) || re.Message != "boom: x" {
			t.Fatalf("handler error: %v", err)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		_, err = driver.SendRPCWithContext(ctx, e2eBlock, to, nil)
		cancel()
		if !IsRequestTimeoutError(err) || IsRequestError(err) || IsSendError(err) {
			t.Fatalf("timeout: %v", err)
		}
		if el := time.Since(start); el > 300*time.Millisecond+e2eSlack {
			t.Fatalf("timeout after %v", el)
		}

		ctx, cancel = context.WithCancel(context.Background())
		var cancelled time.Time
		timer := time.AfterFunc(100*time.Millisecond, func() { cancelled = time.Now(); cancel() })
		_, err = driver.SendRPCWithContext(ctx, e2eBlock, to, nil)
		returned := time.Now()
		timer.Stop()
		cancel()
		if !IsRequestError(err) || !errors.Is(err, context.Canceled) || IsRequestTimeoutError(err) || IsSendError(err) {
			t.Fatalf("cancel: %v", err)
		}
		if lag := returned.Sub(cancelled); lag > 100*time.Millisecond {
			t.Fatalf("returned %v after the cancel", lag)
		}

		// The same classification from a process, with the package-level API.
		if got := procs[2].do("rpc %s %d 1 3000", to, e2eFail); got != "err request mesh: command 7002 on "+to+": boom: r" {
			t.Fatalf("handler error in a process: %s", got)
		}
		if got := procs[2].do("rpc %s %d 0 300", driver.GetMyEndPoint(), e2eBlock); !strings.HasPrefix(got, "err timeout ") {
			t.Fatalf("timeout in a process: %s", got)
		}
	})

	t.Run("SendAndUSend", func(t *testing.T) {
		to := procs[0]
		if err := driver.Send(e2eCmd, to.addr, map[string]interface{}{"tag": "reliable"}); err != nil {
			t.Fatal(err)
		}
		b, err := CreateSendBytes(map[string]interface{}{"tag": "bytes"})
		if err != nil {
			t.Fatal(err)
		}
		if err := driver.Send(e2eCmd, to.addr, b); err != nil {
			t.Fatal(err)
		}
		if err := driver.Send(e2eRaw, to.addr, []byte("raw")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Second, func() bool {
			return to.count("CMD reliable") == 1 && to.count("CMD bytes") == 1 && to.count("RAW "+driver.GetMyEndPoint()+" raw") == 1
		}, "Send reaches the process")
		// USend is unreliable: on loopback it arrives, but a datagram may be
		// dropped by a busy kernel, so it gets three tries.
		for try := 0; ; try++ {
			if err := driver.USend(e2eCmd, to.addr, map[string]interface{}{"tag": "unreliable"}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for to.count("CMD unreliable") == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if to.count("CMD unreliable") > 0 {
				break
			}
			if try == 2 {
				t.Fatal("USend lost three times on loopback")
			}
			t.Logf("USend try %d lost", try)
		}
		// From a process to an in-process node, with the package-level API.
		if got := procs[1].do("send %s from-process", driver.GetMyEndPoint()); got != "ok" {
			t.Fatal(got)
		}
		eventually(t, 2*time.Second, func() bool { return log.count(driver.GetMyEndPoint(), "from-process") == 1 }, "Send from a process arrives")
		rawMu.Lock()
		defer rawMu.Unlock()
		if len(rawFrom) != 0 {
			t.Fatalf("raw handler got %v", rawFrom)
		}
	})

	t.Run("SharedDataValuesAndStatus", func(t *testing.T) {
		src := procs[2]
		start := time.Now()
		if got := src.do("shared-set e2e_rooms 7"); got != "true" {
			t.Fatalf("shared-set: %s", got)
		}
		src.do("value-set load 42")
		src.do("status %d", StatusTaken)
		others := []*procNode{procs[0], procs[1], procs[3], procs[4]}
		eventually(t, 2*time.Second+e2eSlack, func() bool {
			for _, n := range all {
				v, ok := n.GetSharedData("e2e_rooms")
				if !ok || v != 7 || GetInt(n.GetNodeValues(src.addr), "load") != 42 || !n.IsNodeTaken(src.addr) {
					return false
				}
			}
			for _, p := range others {
				if p.do("shared-get e2e_rooms") != "7 true" || p.do("value-get %s load", src.addr) != "42" || p.do("taken %s", src.addr) != "true" {
					return false
				}
			}
			return true
		}, "shared data, a node value and the taken status reach all 20 other nodes")
		t.Logf("seen by all after %v", time.Since(start))
		for range 50 {
			if got := driver.GetRandomNodeAddressByType("game"); got == src.addr || got == "" {
				t.Fatalf("GetRandomNodeAddressByType gave %q (the taken node is %s)", got, src.addr)
			}
		}
		if src.do("shared-get e2e_rooms") != "7 true" {
			t.Fatal("the writer does not see its own shared data")
		}
		src.do("status %d", StatusOnline)
	})

	// targets puts procs[3], procs[4] and procs[0] where SendMany with
	// limit 3 makes relays of them (the first of each third), and procs[1],
	// procs[2] inside shares.
	targets := []string{procs[3].addr}
	for _, n := range locals[:3] {
		targets = append(targets, n.GetMyEndPoint())
	}
	targets = append(targets, procs[1].addr)
	for _, n := range locals[3:5] {
		targets = append(targets, n.GetMyEndPoint())
	}
	targets = append(targets, procs[4].addr)
	for _, n := range locals[5:10] {
		targets = append(targets, n.GetMyEndPoint())
	}
	targets = append(targets, procs[2].addr, procs[0].addr)
	for _, n := range locals[10:] {
		targets = append(targets, n.GetMyEndPoint())
	}
	if len(targets) != 20 {
		t.Fatalf("%d targets", len(targets))
	}
	procByAddr := map[string]*procNode{}
	for _, p := range procs {
		procByAddr[p.addr] = p
	}
	received := func(addr, tag string) int {
		if p := procByAddr[addr]; p != nil {
			return p.count("CMD " + tag)
		}
		return log.count(addr, tag)
	}
	exactlyOnce := func(t *testing.T, tag string, skip string) {
		t.Helper()
		eventually(t, 5*time.Second, func() bool {
			for _, a := range targets {
				if a != skip && received(a, tag) != 1 {
					return false
				}
			}
			return true
		}, "every target has %q once", tag)
		// Nothing is in flight any more (SendMany returned after every hop
		// acknowledged); give late duplicates a moment to show.
		time.Sleep(200 * time.Millisecond)
		for _, a := range targets {
			if got := received(a, tag); a != skip && got != 1 {
				t.Fatalf("%s received %q %d times", a, tag, got)
			}
		}
	}

	t.Run("SendMany", func(t *testing.T) {
		start := time.Now()
		if err := driver.SendMany(e2eCmd, targets, map[string]interface{}{"tag": "many-1"}, 3); err != nil {
			t.Fatal(err)
		}
		t.Logf("SendMany to 20 nodes (5 processes) returned after %v", time.Since(start))
		exactlyOnce(t, "many-1", "")
	})

	t.Run("SendManyKilledRelay", func(t *testing.T) {
		dead := procs[3]
		dead.kill()
		<-dead.readDone
		start := time.Now()
		err := driver.SendMany(e2eCmd, targets, map[string]interface{}{"tag": "many-2"}, 3)
		var fe *FanoutError
		if !errors.As(err, &fe) || !IsSendError(err) || len(fe.Failed) != 1 || fe.Failed[0] != dead.addr {
			t.Fatalf("SendMany with a killed relay: %v", err)
		}
		t.Logf("SendMany with a killed relay returned after %v: %v", time.Since(start), err)
		exactlyOnce(t, "many-2", dead.addr)
	})

	t.Run("KilledNode", func(t *testing.T) {
		victim := procs[4]
		// Two RPCs wait in the victim's handler: one from an in-process
		// node, one from a process (whose retryTimeout comes from
		// DIARKIS_RETRY_TIMEOUT).
		errc := make(chan error, 1)
		go func() { _, err := driver.SendRPC(e2eBlock, victim.addr, nil); errc <- err }()
		procErr := make(chan string, 1)
		go func() { procErr <- procs[0].do("rpc %s %d 0 10000", victim.addr, e2eBlock) }()
		eventually(t, 3*time.Second, func() bool {
			return victim.count("BLOCK "+driver.GetMyEndPoint()) == 1 && victim.count("BLOCK "+procs[0].addr) == 1
		}, "both RPCs are in the victim's handler")
		victim.kill()
		killed := time.Now()
		bound := e2eRetryTimeout*time.Millisecond + time.Second
		select {
		case err := <-errc:
			if !IsSendError(err) || IsRequestTimeoutError(err) {
				t.Fatalf("pending RPC to a killed node: %v", err)
			}
			if el := time.Since(killed); el > bound {
				t.Fatalf("pending RPC failed after %v, bound %v", el, bound)
			}
			t.Logf("pending RPC failed %v after the kill: %v", time.Since(killed), err)
		case <-time.After(bound + e2eSlack):
			t.Fatalf("pending RPC still waiting %v after the kill", bound+e2eSlack)
		}
		select {
		case got := <-procErr:
			if !strings.HasPrefix(got, "err send ") {
				t.Fatalf("pending RPC from a process: %s", got)
			}
			if el := time.Since(killed); el > bound+e2eSlack {
				t.Fatalf("pending RPC from a process failed after %v, bound %v", el, bound)
			}
			t.Logf("pending RPC from a process failed %v after the kill", time.Since(killed))
		case <-time.After(bound + e2eSlack):
			t.Fatalf("pending RPC from a process still waiting %v after the kill", bound+e2eSlack)
		}

		// An RPC to the dead address is a send error, not a timeout.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := driver.SendRPCWithContext(ctx, e2eEcho, victim.addr, nil); !IsSendError(err) {
			t.Fatalf("RPC to a dead node: %v", err)
		}

		// MARS removes both killed nodes (-remove-after 3s); every view follows.
		gone := []string{victim.addr, procs[3].addr}
		eventually(t, 3*time.Second+time.Second+2*e2eSlack, func() bool {
			for _, n := range all {
				for _, a := range gone {
					if n.GetNode(a) != nil || n.IsNodeOnline(a) || slices.Contains(n.GetNodeAddressesByType("game"), a) {
						return false
					}
				}
			}
			return true
		}, "the killed nodes leave every in-process view")
		t.Logf("killed nodes gone from the views %v after the kill", time.Since(killed))
		for _, p := range procs[:3] {
			eventually(t, 2*time.Second, func() bool {
				nodes := p.do("nodes")
				return !strings.Contains(nodes, victim.addr) && !strings.Contains(nodes, procs[3].addr)
			}, "the killed nodes leave %s's view", p.name)
		}
		for range 50 {
			if got := driver.GetRandomNodeAddressByType("game"); got == "" || slices.Contains(gone, got) {
				t.Fatalf("GetRandomNodeAddressByType gave %q", got)
			}
		}
	})
	t.Logf("TestE2E body took %v", time.Since(began))
}
