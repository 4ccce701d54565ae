package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
)

// The demo's steps after the cluster is up, each returning its report line.

func (d *demo) rpcEcho() (string, error) {
	a := d.nodes[0]
	peers := d.addrs()[1:]
	payload := make([]byte, 64)
	rand.Read(payload)
	echo := func(to string, p []byte) (time.Duration, error) {
		start := time.Now()
		resp, err := a.SendRPC(cmdEcho, to, p)
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(resp, p) {
			return 0, fmt.Errorf("echo from %s differs (%d bytes back, %d sent)", to, len(resp), len(p))
		}
		return took, nil
	}
	const here, there = 500, 200
	var local, remote []time.Duration
	for i := range here {
		rtt, err := echo(peers[i%len(peers)], payload)
		if err != nil {
			return "", err
		}
		local = append(local, rtt)
	}
	for range there {
		rtt, err := echo(d.childAddr, payload)
		if err != nil {
			return "", err
		}
		remote = append(remote, rtt)
	}
	big := make([]byte, 1<<20)
	rand.Read(big)
	bigRTT, err := echo(peers[0], big)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d × 64 B to %d peers here: p50 %s, p99 %s; %d × 64 B to the child: p50 %s, p99 %s; 1 MiB: %s",
		here, len(peers), fmtDur(percentile(local, 50)), fmtDur(percentile(local, 99)),
		there, fmtDur(percentile(remote, 50)), fmtDur(percentile(remote, 99)), fmtDur(bigRTT)), nil
}

func (d *demo) rpcError() (string, error) {
	a, b := d.nodes[0], d.nodes[1].GetMyEndPoint()
	_, err := a.SendRPC(cmdFail, b, []byte("join"))
	var re *mesh.RemoteError
	if !mesh.IsRequestError(err) || mesh.IsSendError(err) || mesh.IsRequestTimeoutError(err) || !errors.As(err, &re) {
		return "", fmt.Errorf("want a remote error (IsRequestError only), got %v", err)
	}
	if re.Message != failMessage {
		return "", fmt.Errorf("remote error text %q, want %q", re.Message, failMessage)
	}
	_, err = a.SendRPC(999, b, nil)
	if !mesh.IsRequestError(err) {
		return "", fmt.Errorf("unregistered command: want IsRequestError, got %v", err)
	}
	return fmt.Sprintf("the handler's error came back as IsRequestError with its text %q; an unregistered command: IsRequestError", re.Message), nil
}

func (d *demo) rpcTimeout() (string, error) {
	const deadline = 300 * time.Millisecond
	for len(d.slow) > 0 {
		<-d.slow
	}
	ctx, cancel := context.WithTimeout(d.ctx, deadline)
	defer cancel()
	start := time.Now()
	_, err := d.nodes[0].SendRPCWithContext(ctx, cmdSlow, d.nodes[1].GetMyEndPoint(), nil)
	took := time.Since(start)
	if !mesh.IsRequestTimeoutError(err) {
		return "", fmt.Errorf("want IsRequestTimeoutError, got %v", err)
	}
	// The handler's copy of the deadline is whole milliseconds, so its
	// "expired" answer may arrive just before the caller's own timer fires.
	if took < deadline-50*time.Millisecond || took > deadline+500*time.Millisecond {
		return "", fmt.Errorf("returned after %s, deadline %s", fmtDur(took), fmtDur(deadline))
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case waited := <-d.slow:
		return fmt.Sprintf("IsRequestTimeoutError after %s (deadline %s); the handler's context ended after %s: the deadline travels with the request",
			fmtDur(took), fmtDur(deadline), fmtDur(waited)), nil
	case <-t.C:
		return "", errors.New("the slow handler's context was not cancelled")
	}
}

func (d *demo) send() (string, error) {
	a, b, hb := d.nodes[0], d.nodes[1].GetMyEndPoint(), d.hs[1]
	const count = 1000
	total0, msgs0 := hb.counter()
	start := time.Now()
	for i := range count {
		if err := a.Send(cmdCount, b, map[string]interface{}{"add": i + 1}); err != nil {
			return "", err
		}
	}
	queued := time.Since(start)
	if err := d.waitFor(10*time.Second, fmt.Sprintf("%d messages are handled", count), func() bool {
		_, m := hb.counter()
		return m-msgs0 >= count
	}); err != nil {
		return "", err
	}
	handled := time.Since(start)
	total, _ := hb.counter()
	if want := int64(count * (count + 1) / 2); total-total0 != want {
		return "", fmt.Errorf("counter grew by %d, want %d", total-total0, want)
	}
	// SendRequest: a command with a response, decoded into a map.
	type answer struct {
		m   map[string]interface{}
		err error
	}
	ch := make(chan answer, 1)
	a.SendRequest(cmdCount, b, map[string]interface{}{"add": 0}, func(err error, m map[string]interface{}) {
		ch <- answer{m, err}
	})
	ans := <-ch
	if ans.err != nil {
		return "", fmt.Errorf("SendRequest: %w", ans.err)
	}
	if got := mesh.GetInt64(ans.m, "count"); got != total {
		return "", fmt.Errorf("SendRequest answered count=%d, want %d", got, total)
	}
	return fmt.Sprintf("%d reliable messages: queued in %s, all handled after %s (%.0f msg/s), sums match; SendRequest answered count=%d",
		count, fmtDur(queued), fmtDur(handled), count/handled.Seconds(), total), nil
}

func (d *demo) usend() (string, error) {
	i := 2 % d.size
	if i == 0 {
		i = 1
	}
	a, c, hc := d.nodes[0], d.nodes[i].GetMyEndPoint(), d.hs[i]
	const count = 200
	_, msgs0 := hc.counter()
	start := time.Now()
	for range count {
		if err := a.USend(cmdCount, c, map[string]interface{}{"add": 1}); err != nil {
			return "", err
		}
	}
	arrived := func() int64 { _, m := hc.counter(); return m - msgs0 }
	d.waitFor(2*time.Second, "", func() bool { return arrived() >= count })
	got := arrived()
	detail := fmt.Sprintf("%d unreliable messages to node %d: %d arrived after %s", count, i, got, fmtDur(time.Since(start)))
	if got < count/2 {
		return detail, fmt.Errorf("fewer than half arrived (some loss is allowed, not this much)")
	}
	return detail + " (loss is allowed; loopback rarely loses any)", nil
}

func (d *demo) childStats() (stats, error) {
	resp, err := d.nodes[0].SendRPC(cmdStats, d.childAddr, nil)
	if err != nil {
		return stats{}, err
	}
	return decodeStats(resp)
}

func (d *demo) sendMany() (string, error) {
	a := d.nodes[0]
	targets := append(d.addrs(), d.childAddr)
	base := make([]int64, d.size)
	for i, h := range d.hs {
		base[i] = h.broadcasts.Load()
	}
	cbase, err := d.childStats()
	if err != nil {
		return "", fmt.Errorf("child stats: %w", err)
	}
	start := time.Now()
	if err := a.SendMany(cmdBroadcast, targets, map[string]interface{}{"text": "round 1 starts"}, 2); err != nil {
		return "", err
	}
	took := time.Since(start)
	var cs stats
	if err := d.waitFor(5*time.Second, "every node has the broadcast", func() bool {
		for i, h := range d.hs {
			if h.broadcasts.Load() == base[i] {
				return false
			}
		}
		cs, err = d.childStats()
		return err == nil && cs.Broadcasts > cbase.Broadcasts
	}); err != nil {
		return "", err
	}
	for i, h := range d.hs {
		if got := h.broadcasts.Load() - base[i]; got != 1 {
			return "", fmt.Errorf("node %d got the broadcast %d times", i, got)
		}
	}
	if got := cs.Broadcasts - cbase.Broadcasts; got != 1 {
		return "", fmt.Errorf("the child got the broadcast %d times", got)
	}
	return fmt.Sprintf("1 message to %d nodes (self and the child included), each sender reaching at most 2: "+
		"returned after %s, every hop acknowledged; each node got it exactly once (the child's count read over its td-encoded stats RPC)",
		len(targets), fmtDur(took)), nil
}

func (d *demo) sharedData() (string, error) {
	b := d.nodes[1]
	const key = "rooms"
	start := time.Now()
	if !b.SetSharedData(key, 42) {
		return "", errors.New("SetSharedData refused")
	}
	if err := d.waitFor(5*time.Second, "every node sees rooms=42", func() bool {
		for _, n := range d.nodes {
			if v, ok := n.GetSharedData(key); !ok || v != 42 {
				return false
			}
		}
		return true
	}); err != nil {
		return "", err
	}
	set := time.Since(start)
	start = time.Now()
	if !b.RemoveSharedData(key) {
		return "", errors.New("RemoveSharedData refused")
	}
	if err := d.waitFor(5*time.Second, "rooms is gone everywhere", func() bool {
		for _, n := range d.nodes {
			if _, ok := n.GetSharedData(key); ok {
				return false
			}
		}
		return true
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("node 1 set %s=42: in every node's view after %s; removed: gone everywhere after %s (sync every %v)",
		key, fmtDur(set), fmtDur(time.Since(start)), demoSyncInterval), nil
}

func (d *demo) values() (string, error) {
	a, b := d.nodes[0], d.nodes[1]
	ci := d.size - 1
	c := d.nodes[ci]
	start := time.Now()
	b.SetNodeValue("load", int64(7))
	if err := d.waitFor(5*time.Second, "node 0 sees load=7 on node 1", func() bool {
		return fmt.Sprint(a.GetNodeValue(b.GetMyEndPoint(), "load")) == "7"
	}); err != nil {
		return "", err
	}
	valueSeen := time.Since(start)
	start = time.Now()
	c.SetStatus(mesh.StatusTaken)
	if err := d.waitFor(5*time.Second, fmt.Sprintf("node 0 sees node %d taken", ci), func() bool {
		return a.IsNodeTaken(c.GetMyEndPoint())
	}); err != nil {
		return "", err
	}
	takenSeen := time.Since(start)
	c.SetStatus(mesh.StatusOnline)
	if err := d.waitFor(5*time.Second, fmt.Sprintf("node 0 sees node %d online again", ci), func() bool {
		return a.IsNodeOnline(c.GetMyEndPoint())
	}); err != nil {
		return "", err
	}
	rec := a.GetNodeByEndPoint(demoEndPoint(1))
	if rec == nil || rec.Addr != b.GetMyEndPoint() {
		return "", fmt.Errorf("GetNodeByEndPoint(%s) = %v, want node 1", demoEndPoint(1), rec)
	}
	if r := a.GetNodeValue(b.GetMyEndPoint(), "region"); r != "us" {
		return "", fmt.Errorf("node 1's region is %v, want us", r)
	}
	games := len(a.GetNodeAddressesByType(demoType))
	if games != d.size+1 {
		return "", fmt.Errorf("%d nodes of type %s, want %d", games, demoType, d.size+1)
	}
	return fmt.Sprintf("node 1 set load=7: node 0 saw it after %s; node %d set status taken: seen after %s, then online again; "+
		"GetNodeByEndPoint(%s) is node 1 (region=us); %d nodes of type %s",
		fmtDur(valueSeen), ci, fmtDur(takenSeen), demoEndPoint(1), games, demoType), nil
}

func (d *demo) guestHealth() (string, error) {
	g, err := mesh.New(d.cfg, mesh.AsGuest(), mesh.WithLogger(d.log), mesh.WithSyncInterval(demoSyncInterval))
	if err != nil {
		return "", err
	}
	d.guest = g
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-g.Ready():
	case <-t.C:
		return "", errors.New("the guest did not sync within 5s")
	}
	d.nodes[0].WaitForLatestNodeData() // the guest would be listed by now, were it a node
	if rec := d.nodes[0].GetNode(g.GetMyEndPoint()); rec != nil {
		return "", errors.New("the guest is listed as a node")
	}
	want := d.size + 1
	if err := d.waitFor(5*time.Second, fmt.Sprintf("the guest lists %d nodes", want), func() bool {
		return len(g.GetNodeAddresses(nil)) == want
	}); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(d.ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := g.HealthCheck(ctx, d.childAddr); err != nil {
		return "", fmt.Errorf("health check of the child: %w", err)
	}
	ok := time.Since(start)
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer silent.Close()
	const patience = 500 * time.Millisecond
	ctx2, cancel2 := context.WithTimeout(d.ctx, patience)
	defer cancel2()
	start = time.Now()
	err = g.HealthCheck(ctx2, silent.LocalAddr().String())
	if !mesh.IsSendError(err) {
		return "", fmt.Errorf("health check of a silent port: want IsSendError, got %v", err)
	}
	return fmt.Sprintf("a guest synced the view (%d nodes) and is not listed; its health check of the child answered in %s, "+
		"of a port where nothing answers: IsSendError after %s", want, fmtDur(ok), fmtDur(time.Since(start))), nil
}

// kill crashes the child node with SIGKILL: no goodbye to its peers, no
// leave to MARS. Its peers find out through silence.
func (d *demo) kill() (string, error) {
	a := d.nodes[0]
	if err := d.child.Process.Kill(); err != nil {
		return "", err
	}
	killed := time.Now()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-d.childDone:
	case <-t.C:
		return "", errors.New("the child did not exit within 5s of SIGKILL")
	}
	// Hold the dead node's port with a socket that never answers: on a busy
	// machine another program could otherwise bind it within the second
	// the checks below take, and answer in the dead node's place.
	if c, err := net.ListenPacket("udp4", d.childAddr); err == nil {
		d.tombstone = c
	}
	d.gone = make(chan leaveTimes, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.watchLeave(killed)
	}()

	start := time.Now()
	_, err := a.SendRPC(cmdEcho, d.childAddr, []byte("are you there?"))
	rpcTook := time.Since(start)
	if !mesh.IsSendError(err) {
		return "", fmt.Errorf("RPC to the killed node: want IsSendError, got %v", err)
	}
	so := fmt.Sprintf("SIGKILL pid %d: an RPC to it failed with IsSendError after %s (retryTimeout %d ms)",
		d.childPID, fmtDur(rpcTook), demoRetryTimeout)

	// Fan-out with the dead node as the first relay: its share is re-sent.
	others := d.addrs()
	base := make([]int64, d.size)
	for i, h := range d.hs {
		base[i] = h.broadcasts.Load()
	}
	start = time.Now()
	err = a.SendMany(cmdBroadcast, append([]string{d.childAddr}, others...), map[string]interface{}{"text": "round 2 starts"}, 2)
	manyTook := time.Since(start)
	var fe *mesh.FanoutError
	if !errors.As(err, &fe) || !mesh.IsSendError(err) || len(fe.Failed) != 1 || fe.Failed[0] != d.childAddr {
		return so, fmt.Errorf("SendMany with the dead node returned after %s: want a FanoutError naming only %s, got %v",
			fmtDur(manyTook), d.childAddr, err)
	}
	if err := d.waitFor(5*time.Second, "the other nodes have the broadcast", func() bool {
		for i, h := range d.hs {
			if h.broadcasts.Load() == base[i] {
				return false
			}
		}
		return true
	}); err != nil {
		return "", err
	}
	d.failMu.Lock()
	heard := d.failures[d.childAddr] != nil
	d.failMu.Unlock()
	if !heard {
		return "", errors.New("OnSendFailure did not report the killed node")
	}
	return so + fmt.Sprintf("; SendMany with it as first relay: FanoutError names only it, the other %d got the message after %s; OnSendFailure reported it",
		d.size, fmtDur(manyTook)), nil
}

// watchLeave records when node 0 lists the killed child offline and when
// it is gone from every node's view.
func (d *demo) watchLeave(killed time.Time) {
	var lt leaveTimes
	lt.err = d.waitFor(demoRemoveAfter+7*time.Second, "the killed node is gone from every view", func() bool {
		if lt.offline == 0 && d.nodes[0].IsNodeOffline(d.childAddr) {
			lt.offline = time.Since(killed)
		}
		for _, n := range d.nodes {
			if n.GetNode(d.childAddr) != nil {
				return false
			}
		}
		return true
	})
	lt.removed = time.Since(killed)
	d.gone <- lt
}

func (d *demo) leaves() (string, error) {
	if d.gone == nil {
		return "", errors.New("the node was not killed")
	}
	lt := <-d.gone
	if lt.err != nil {
		return "", lt.err
	}
	offline := "not seen (removed within one sync)"
	if lt.offline > 0 {
		offline = "after " + fmtDur(lt.offline)
	}
	return fmt.Sprintf("after the kill, node 0 listed it offline %s and it was gone from all %d views after %s (MARS: offline after %v, removed after %v of silence)",
		offline, d.size, fmtDur(lt.removed), demoOfflineAfter, demoRemoveAfter), nil
}

func (d *demo) graceful() (string, error) {
	a := d.nodes[0]
	i := d.size - 1
	n := d.nodes[i]
	addr := n.GetMyEndPoint()
	var mu sync.Mutex
	seen := make(map[mesh.NodeState]time.Duration)
	start := time.Now()
	remove := a.OnNodeEvent(func(e mesh.NodeEvent) { // node 0 follows node i's membership
		mu.Lock()
		defer mu.Unlock()
		if _, ok := seen[e.New]; e.Addr == addr && !ok {
			seen[e.New] = time.Since(start)
		}
	})
	defer remove()
	if err := n.Shutdown(); err != nil {
		return "", fmt.Errorf("shutdown: %w", err)
	}
	shut := time.Since(start)
	if err := d.waitFor(5*time.Second, fmt.Sprintf("node 0 sees node %d gone", i), func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, gone := seen[mesh.StateGone]
		return gone
	}); err != nil {
		return "", err
	}
	mu.Lock()
	defer mu.Unlock()
	drained, ok := seen[mesh.StateDraining]
	if !ok {
		return "", fmt.Errorf("node 0 never saw node %d draining", i)
	}
	return fmt.Sprintf("node %d called Shutdown (returned after %s): node 0 saw it draining after %s (out of its lists; "+
		"requests still reaching it get ErrDraining) and gone after %s; no silence to wait for, unlike a crash",
		i, fmtDur(shut), fmtDur(drained), fmtDur(seen[mesh.StateGone])), nil
}
