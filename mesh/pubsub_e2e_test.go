package mesh

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The pub-sub end-to-end test: a mars-server process, publisher and
// subscriber node processes (this test binary, see e2e_harness_test.go),
// real UDP on 127.0.0.1. MESH_PUBSUB_E2E=full runs the size of the issue's
// check (30 subscribers, 20 topics, 3 queue groups, 5 publishers, 100,000
// publishes); by default a CI size that takes seconds.

const e2ePubsubTermEnv = "MESH_E2E_PS_TERM" // set: SIGTERM drains the node process and prints DRAIN <pending>

// helperEmit prints an event line of a node process (set by runHelperNode).
var helperEmit func(format string, args ...any)

// drainOnTerm makes SIGTERM shut the node process down: once the node
// drains (it takes no more messages) it prints "DRAIN <pending>", the
// messages its subscriptions still hold, then exits when Shutdown returns.
func drainOnTerm(emit func(string, ...any)) (stop func()) {
	ch, quit := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(ch, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
		case <-quit:
			return
		}
		n := Default()
		done := make(chan struct{})
		go func() { Shutdown(); close(done) }()
		for !n.IsDraining() {
			time.Sleep(time.Millisecond)
		}
		pending := 0
		for _, s := range n.ps.subscriptions() {
			m, _ := s.Pending()
			pending += m
		}
		emit("DRAIN %d", pending)
		<-done
		os.Exit(0)
	}()
	return func() { signal.Stop(ch); close(quit) }
}

// pubsubHelperCommand runs the pub-sub commands of a node process:
//
//	ps-sub <pattern> <group or -> <tag>: subscribe; the handler prints "PS <tag> <topic> <payload>"
//	ps-pub <id> <count> <rate> <topic,topic,...>: publish "<id>:<seq>" to the topics in turn, at most rate a second (0: no
//	  limit), in the background; prints "PSDONE <id> <errors> <first error>"
func pubsubHelperCommand(f []string) (string, bool) {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch f[0] {
	case "ps-sub":
		tag := arg(3)
		h := func(m *Message) { helperEmit("PS %s %s %s", tag, m.Topic, m.Payload) }
		var err error
		if arg(2) == "-" {
			_, err = Subscribe(arg(1), h)
		} else {
			_, err = QueueSubscribe(arg(1), arg(2), h)
		}
		if err != nil {
			return "err " + err.Error(), true
		}
		return "ok", true
	case "ps-pub":
		id, topics := arg(1), strings.Split(arg(4), ",")
		count, _ := strconv.Atoi(arg(2))
		rate, _ := strconv.Atoi(arg(3))
		go func() {
			errs, first := 0, "-"
			start := time.Now()
			for i := range count {
				if rate > 0 {
					if ahead := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); ahead > 0 {
						time.Sleep(ahead)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := Publish(ctx, topics[i%len(topics)], fmt.Appendf(nil, "%s:%d", id, i)); err != nil {
					if errs++; errs == 1 {
						first = strings.ReplaceAll(err.Error(), " ", "_")
					}
				}
				cancel()
			}
			helperEmit("PSDONE %s %d %s", id, errs, first)
		}()
		return "started", true
	case "ps-route": // ps-route <topic> <addr>: how this node routes topic, and addr's state in its view
		r := Default().ps.routes(Default().mc.View()).lookup(arg(1))
		in := false
		for _, m := range r.plain {
			in = in || m.addr == arg(2)
		}
		Default().ps.rmu.Lock()
		ri, known := Default().ps.remote[arg(2)]
		Default().ps.rmu.Unlock()
		return fmt.Sprintf("routed=%v state=%v interest_known=%v entries=%d inc=%x view_inc=%x plain=%d",
			in, Default().mc.View().State(arg(2)), known, len(ri.entries), ri.inc, viewInc(arg(2)), len(r.plain)), true
	case "ps-stats":
		st := Default().TopicStats()
		return fmt.Sprintf("queueFailed=%d retries=%d dropped=%d inflight=%d", st.QueueFailed, st.Retries, st.Dropped, len(Default().ps.inflight)), true
	}
	return "", false
}

// viewInc is the incarnation the default node's view lists for addr (0: none).
func viewInc(addr string) uint64 {
	for _, nd := range Default().mc.View().Nodes() {
		if nd.Addr == addr {
			return nd.Incarnation
		}
	}
	return 0
}

// psSub is one subscriber process of the test.
type psSub struct {
	p       *procNode
	i       int
	pattern string // its plain subscription
	group   string // its queue group
	joiner  bool   // subscribed while publishing ran
	late    []int  // publishers that had finished when it subscribed
	state   string // "", "drained", "killed"

	countMu sync.Mutex
	counted int            // events counted so far
	counts  map[string]int // PS lines per tag
}

func (s *psSub) events() []string {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return append([]string(nil), s.p.events...)
}

func TestE2EPubsub(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	// rate paces each publisher (messages a second) so that joiners
	// subscribe while it publishes.
	subsN, topicsN, groupsN, pubsN, total, joinersN, rate := 6, 4, 2, 2, 2000, 1, 250
	if os.Getenv("MESH_PUBSUB_E2E") == "full" {
		subsN, topicsN, groupsN, pubsN, total, joinersN, rate = 30, 20, 3, 5, 100000, 3, 1000
	}
	per := total / pubsN
	// A process stalled for retryTimeout on a loaded 2-core machine is
	// found dead by its peers, which then stop sending to it for a while:
	// these nodes run with the default retry timeout (3 s), not the other
	// E2E tests' 1 s.
	nodeEnv := []string{"DIARKIS_RETRY_TIMEOUT=3000"}
	marsBin := buildMarsServer(t)
	mp := startMarsServer(t, marsBin)
	cfg := e2eConfig(t)
	topics := make([]string, topicsN)
	for i := range topics {
		topics[i] = fmt.Sprintf("ps.t%d.x", i)
	}
	start := func(name, typ string, env ...string) *procNode {
		return mustStartNode(t, name, mp.port, cfg, typ, append(env, nodeEnv...)...)
	}
	var pubs []*procNode
	for i := range pubsN {
		pubs = append(pubs, start(fmt.Sprintf("pub%d", i), "pub"))
	}
	newSub := func(i int, joiner bool) *psSub {
		s := &psSub{i: i, group: fmt.Sprintf("g%d", i%groupsN), joiner: joiner}
		switch i % 3 {
		case 0:
			s.pattern = "ps.*.x"
		case 1:
			s.pattern = topics[i%topicsN]
		default:
			s.pattern = "ps.>"
		}
		s.p = start(fmt.Sprintf("sub%d", i), "sub", e2ePubsubTermEnv+"=1")
		if r := s.p.do("ps-sub %s - plain", s.pattern); r != "ok" {
			t.Fatalf("sub%d: %s", i, r)
		}
		if r := s.p.do("ps-sub ps.> %s queue", s.group); r != "ok" {
			t.Fatalf("sub%d: %s", i, r)
		}
		return s
	}
	subs := make([]*psSub, subsN)
	var wg sync.WaitGroup
	for i := range subsN {
		wg.Go(func() { subs[i] = newSub(i, false) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, p := range pubs {
		if r := p.do("ps-pub p%d %d %d %s", i, per, rate, strings.Join(topics, ",")); r != "started" {
			t.Fatal(r)
		}
	}
	// While they publish: one subscriber drains (SIGTERM), one is killed
	// (SIGKILL), and new ones subscribe.
	progress := func(s *psSub) int { s.p.mu.Lock(); defer s.p.mu.Unlock(); return len(s.p.events) }
	if !waitFor(60*time.Second, func() bool { return progress(subs[2]) > total/10 }) {
		for _, p := range pubs {
			t.Logf("%s events %v\n%s", p.name, p.eventsWith(""), p.stderr)
		}
		t.Fatalf("publishing is not under way: sub2 has %v", subs[2].events())
	}
	drained, killed := subs[2], subs[4%subsN]
	drained.state, killed.state = "drained", "killed"
	drained.p.cmd.Process.Signal(syscall.SIGTERM)
	killed.p.kill()
	joiners := make([]*psSub, joinersN)
	for j := range joinersN {
		wg.Go(func() {
			s := newSub(subsN+j, true)
			for i, p := range pubs { // it subscribed after these finished: nothing to expect from them
				if len(p.eventsWith("PSDONE ")) > 0 {
					s.late = append(s.late, i)
				}
			}
			joiners[j] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	subs = append(subs, joiners...)
	for i, p := range pubs {
		eventually(t, 5*time.Minute, func() bool { return len(p.eventsWith("PSDONE ")) == 1 }, "pub%d is done", i)
		if r := p.eventsWith("PSDONE ")[0]; r != fmt.Sprintf("PSDONE p%d 0 -", i) {
			t.Errorf("pub%d: %s", i, r)
		}
	}
	// Every live subscriber gets what it should; then check everything.
	want := func(s *psSub, pub, seq int) bool { return matchTopic(s.pattern, topics[seq%topicsN]) }
	for _, s := range subs {
		if s.state != "" {
			continue
		}
		expect := 0
		for range pubsN {
			for seq := range per {
				if want(s, 0, seq) {
					expect++
				}
			}
		}
		if s.joiner {
			continue // checked below: a suffix of each publisher's messages
		}
		if !waitProgress(time.Minute, func() int { return s.count("plain") }, expect) {
			got, _, _ := s.received("plain")
			for pi := range pubsN {
				var missing []string // sequence ranges it should have and has not
				have := make(map[int]bool, len(got[pi]))
				for _, seq := range got[pi] {
					have[seq] = true
				}
				from, n := -1, 0
				for seq := range per + 1 {
					miss := seq < per && want(s, pi, seq) && !have[seq]
					switch {
					case miss && from < 0:
						from, n = seq, 1
					case miss:
						n++
					case from >= 0 && seq < per && !want(s, pi, seq):
						// a message it should not get: the range goes on
					case from >= 0:
						if len(missing) < 8 {
							missing = append(missing, fmt.Sprintf("%d-%d (%d)", from, seq-1, n))
						}
						from = -1
					}
				}
				t.Logf("sub%d from p%d: %d messages, missing %v", s.i, pi, len(got[pi]), missing)
			}
			topic := topics[s.i%topicsN] // one it subscribes to
			for pi, p := range pubs {
				t.Logf("p%d routes %s to sub%d: %s; its send failures to it: %v", pi, topic, s.i,
					p.do("ps-route %s %s", topic, s.p.addr), p.eventsWith("SENDFAIL "+s.p.addr))
			}
			var marsLines []string // what MARS logged about it
			for _, l := range strings.Split(mp.log.String(), "\n") {
				if strings.Contains(l, s.p.addr) && len(marsLines) < 20 {
					marsLines = append(marsLines, l)
				}
			}
			t.Logf("MARS on sub%d:\n%s", s.i, strings.Join(marsLines, "\n"))
			errs := s.p.stderr.String()
			t.Logf("sub%d: %s; its log (end):\n%s", s.i, s.p.do("ps-stats"), errs[max(0, len(errs)-2000):])
			t.Fatalf("sub%d (%s) has %d of its %d messages", s.i, s.pattern, s.count("plain"), expect)
		}
	}
	groupTotal := total * groupsN
	queued := func() int {
		n := 0
		for _, s := range subs {
			n += s.count("queue")
		}
		return n
	}
	// The killed member may have taken some with it.
	if !waitProgress(time.Minute, queued, groupTotal-1000) {
		for i, p := range pubs {
			t.Logf("pub%d: %s", i, p.do("ps-stats"))
		}
		t.Fatalf("the queue groups have %d of their %d messages, and no more came for a minute", queued(), groupTotal)
	}
	for i, p := range pubs {
		eventually(t, time.Minute, func() bool { return strings.HasSuffix(p.do("ps-stats"), " inflight=0") }, "pub%d's queue deliveries end", i)
		r := p.do("ps-stats")
		t.Logf("pub%d: %s", i, r)
		if !strings.HasPrefix(r, "queueFailed=0 ") {
			var why []string
			for _, l := range strings.Split(p.stderr.String(), "\n") {
				if strings.Contains(l, "queue group") {
					why = append(why, l)
				}
			}
			errs := p.stderr.String()
			t.Errorf("pub%d: queue deliveries failed: %s\n%s\nits log (end):\n%s", i, r, strings.Join(why, "\n"), errs[max(0, len(errs)-3000):])
		}
	}
	checkPubsubE2E(t, subs, pubsN, per, groupsN, topics)
}

// plain returns what a subscriber's plain subscription got, per publisher,
// as sequence numbers in arrival order, and the index of its DRAIN line in
// its events (-1 if none).
func (s *psSub) received(tag string) (got map[int][]int, afterDrain, pending int) {
	got = make(map[int][]int)
	afterDrain, pending = -1, 0
	for _, e := range s.events() {
		if strings.HasPrefix(e, "DRAIN ") {
			afterDrain = 0
			pending, _ = strconv.Atoi(strings.TrimPrefix(e, "DRAIN "))
			continue
		}
		f := strings.Fields(e) // PS <tag> <topic> p<id>:<seq>
		if len(f) != 4 || f[0] != "PS" || f[1] != tag {
			continue
		}
		id, seq, _ := strings.Cut(strings.TrimPrefix(f[3], "p"), ":")
		pi, _ := strconv.Atoi(id)
		si, _ := strconv.Atoi(seq)
		got[pi] = append(got[pi], si)
		if afterDrain >= 0 {
			afterDrain++
		}
	}
	return got, afterDrain, pending
}

// count returns how many messages a subscription got; it reads only the
// events that came since it last looked (the test polls it often, and
// parsing every event each time starved the node processes under -race).
func (s *psSub) count(tag string) int {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	s.p.mu.Lock()
	fresh := s.p.events[s.counted:]
	s.counted = len(s.p.events)
	s.p.mu.Unlock()
	if s.counts == nil {
		s.counts = make(map[string]int)
	}
	for _, e := range fresh {
		if f := strings.Fields(e); len(f) == 4 && f[0] == "PS" {
			s.counts[f[1]]++
		}
	}
	return s.counts[tag]
}

func (p *procNode) eventsWith(prefix string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		if strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func checkPubsubE2E(t *testing.T, subs []*psSub, pubsN, per, groupsN int, topics []string) {
	t.Helper()
	for _, s := range subs {
		got, afterDrain, pending := s.received("plain")
		for pi := range pubsN {
			var want []int
			for seq := range per {
				if matchTopic(s.pattern, topics[seq%len(topics)]) {
					want = append(want, seq)
				}
			}
			l := got[pi]
			for k := 1; k < len(l); k++ {
				if l[k] <= l[k-1] {
					t.Fatalf("sub%d (%s): from p%d %d after %d: duplicated or out of order", s.i, s.state, pi, l[k], l[k-1])
				}
			}
			switch {
			case s.state != "":
				// drained or killed: in order and once (above) is all
			case s.joiner && slices.Contains(s.late, pi):
				t.Logf("joiner sub%d subscribed after p%d finished", s.i, pi)
			case s.joiner:
				// subscribed while p published: everything from its first message on
				if len(l) == 0 {
					t.Errorf("joiner sub%d got nothing from p%d", s.i, pi)
					continue
				}
				i := slicesIndex(want, l[0])
				if fmt.Sprint(l) != fmt.Sprint(want[i:]) {
					t.Errorf("joiner sub%d from p%d: %d messages from %d on, want %d", s.i, pi, len(l), l[0], len(want)-i)
				}
			default:
				if len(l) != len(want) {
					t.Errorf("sub%d (%s) from p%d: %d messages, want %d", s.i, s.pattern, pi, len(l), len(want))
				}
			}
		}
		if s.state == "drained" {
			if afterDrain < 0 {
				t.Errorf("sub%d drained but printed no DRAIN line", s.i)
			} else if afterDrain > pending+2 {
				// at most what its subscriptions held when it began to drain,
				// plus one each being handed over then
				t.Errorf("sub%d handled %d messages after it began draining, holding %d", s.i, afterDrain, pending)
			}
			t.Logf("sub%d: %d messages handled after drain began (%d were pending)", s.i, afterDrain, pending)
		}
	}
	// Queue groups: each message handled by exactly one member, or twice
	// if a killed member died after its handler ran and before it
	// answered (the publisher then gave it to another member). The
	// publishers counted no failed delivery (checked before), so none is
	// lost.
	lost, dup := 0, 0
	for g := range groupsN {
		group := fmt.Sprintf("g%d", g)
		handled := make(map[[2]int][]*psSub)
		killedIn := false
		for _, s := range subs {
			if s.group != group {
				continue
			}
			killedIn = killedIn || s.state == "killed"
			got, _, _ := s.received("queue")
			for pi, l := range got {
				for _, seq := range l {
					handled[[2]int{pi, seq}] = append(handled[[2]int{pi, seq}], s)
				}
			}
		}
		for pi := range pubsN {
			for seq := range per {
				h := handled[[2]int{pi, seq}]
				switch {
				case len(h) == 1:
				case len(h) == 0:
					lost++
					if lost <= 10 {
						t.Errorf("group %s: p%d:%d handled by no member (a member killed in the group: %v)", group, pi, seq, killedIn)
					}
				case len(h) == 2 && (h[0].state == "killed" || h[1].state == "killed"):
					dup++
				default:
					t.Fatalf("group %s: p%d:%d handled %d times", group, pi, seq, len(h))
				}
			}
		}
	}
	t.Logf("queue groups: %d messages lost with the killed member, %d handled again after it died", lost, dup)
}

func slicesIndex(l []int, v int) int {
	for i, x := range l {
		if x == v {
			return i
		}
	}
	return 0
}

// waitProgress polls count until it reaches target; it gives up when
// count has not grown for stall (a loaded machine makes it slow, not
// stuck).
func waitProgress(stall time.Duration, count func() int, target int) bool {
	last, since := count(), time.Now()
	for last < target {
		if time.Since(since) > stall {
			return false
		}
		time.Sleep(100 * time.Millisecond)
		if n := count(); n > last {
			last, since = n, time.Now()
		}
	}
	return true
}

// waitFor polls cond every 100 ms until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
