package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
	"github.com/nats-io/nats.go"
)

// The cross-process fan-out suite (xfanout): one sender in the bench
// process, the receivers in child processes (-fanprocs of them, receivers
// spread evenly; default one process per receiver). A child prints
// "GOT <round> <Unix ns>" once all its receivers have a round's message; a
// round's time runs from the send call to the latest GOT.

// fanSink counts, in a child, the receipts of the current round.
type fanSink struct {
	mu    sync.Mutex
	want  int
	round uint64
	got   int
}

func (s *fanSink) receive(p []byte) {
	if len(p) < 8 {
		return
	}
	id := binary.BigEndian.Uint64(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id > s.round {
		s.round, s.got = id, 0
	}
	if id != s.round {
		return
	}
	if s.got++; s.got == s.want {
		say("GOT %d %d\n", id, time.Now().UnixNano())
	}
}

// meshSinks starts k nodes counting fan-out rounds (in a child).
func meshSinks(host, marsAddr string, k int) (string, func() error, error) {
	s := &fanSink{want: k}
	var nodes []*mesh.Node
	stop := func() error {
		var errs []error
		for _, n := range nodes {
			errs = append(errs, n.Shutdown())
		}
		return errors.Join(errs...)
	}
	var addrs []string
	for range k {
		n, err := newMeshNode(host, marsAddr)
		if err != nil {
			stop()
			return "", nil, err
		}
		nodes = append(nodes, n)
		n.SetCommandHandler(cmdSink, func(p []byte, _ string) ([]byte, error) { s.receive(p); return nil, nil })
		addrs = append(addrs, n.GetMyEndPoint())
	}
	return strings.Join(addrs, ","), stop, nil
}

// natsSubs starts k subscriber connections counting fan-out rounds.
func natsSubs(url string, k int) (func() error, error) {
	s := &fanSink{want: k}
	var conns []*nats.Conn
	stop := func() error {
		for _, c := range conns {
			c.Close()
		}
		return nil
	}
	for range k {
		nc, err := natsConnect(url)
		if err == nil {
			conns = append(conns, nc)
			if _, err = nc.Subscribe(natsFanSubject, func(m *nats.Msg) { s.receive(m.Data) }); err == nil {
				err = nc.Flush()
			}
		}
		if err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// xfan is one system's receivers for one receiver count.
type xfan struct {
	sinks []*child
	addrs []string
	pids  []int
	round uint64
}

func (b *bench) spawnXFan(key string, n int) (*xfan, error) {
	return b.spawnSubs(key, n, "mesh-sinks", "nats-subs", true)
}

// spawnSubs starts n receivers of a system spread over child processes
// (b.fanProcs of them at most) of the given child kinds; with addrs, the
// marsmesh children's node addresses are kept in x.addrs.
func (b *bench) spawnSubs(key string, n int, meshKind, natsKind string, addrs bool) (*xfan, error) {
	f, err := b.fleet(key)
	if err != nil {
		return nil, err
	}
	procs := n
	if b.fanProcs > 0 {
		procs = min(b.fanProcs, n)
	}
	x := &xfan{pids: append([]int{os.Getpid()}, f.pids()[0])} // MARS or nats-server
	for i := range procs {
		k := n/procs + btoi(i < n%procs)
		var c *child
		if key == sysMarsmesh {
			c, err = startChild("", meshKind, "127.0.0.1", f.eps[0], fmt.Sprint(k))
		} else {
			c, err = startChild("", natsKind, f.eps[0], fmt.Sprint(k))
		}
		if err != nil {
			x.Close()
			return nil, err
		}
		x.sinks = append(x.sinks, c)
		x.pids = append(x.pids, c.pid())
		if addrs && key == sysMarsmesh {
			x.addrs = append(x.addrs, strings.Split(c.ready, ",")...)
		}
	}
	return x, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (x *xfan) Close() error {
	var errs []error
	for _, c := range x.sinks {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// run sends count rounds (after warm ones), each bounded by 5 s, and
// returns each round's time until the last receiver had it.
func (x *xfan) run(payload, warm, count int, d time.Duration, send func([]byte) error) ([]time.Duration, error) {
	msg := make([]byte, max(payload, 8))
	var lat []time.Duration
	deadline := time.Now().Add(d)
	for i := 0; i < warm+count; i++ {
		if i >= warm && time.Now().After(deadline) {
			break
		}
		x.round++
		binary.BigEndian.PutUint64(msg, x.round)
		start := time.Now()
		if err := send(msg); err != nil {
			return lat, err
		}
		var last int64
		for _, c := range x.sinks {
			for {
				line, err := c.next(5 * time.Second)
				if err != nil {
					return lat, fmt.Errorf("round %d: %v", x.round, err)
				}
				var id uint64
				var ns int64
				if _, err := fmt.Sscanf(line, "GOT %d %d", &id, &ns); err == nil && id == x.round {
					last = max(last, ns)
					break
				}
			}
		}
		if i >= warm {
			lat = append(lat, time.Unix(0, last).Sub(start))
		}
	}
	return lat, nil
}

// fanFlat is the limit of a flat SendMany (the sender sends to every
// receiver itself: SendMany's limit <= 0), measured besides the trees of
// the plan's limits. On this 2-core VM it beats every tree, which adds a
// process wake-up per hop.
const fanFlat = -1

type xfanCase struct {
	system, name string
	limit        int
	x            *xfan
	send         func([]byte) error
	err          error
	rounds       []RoundFig
}

func (b *bench) suiteXFanout() {
	for _, n := range b.fanNodes {
		var cases []*xfanCase
		var closers []func() error
		skip := func(system, name string, limit int, msg string) {
			b.add(Record{Suite: "xfanout", System: system, Name: name, Nodes: n, Limit: limit, Payload: b.fanPayload, Err: msg})
		}
		if !b.skipSystem(sysMarsmesh) {
			x, err := b.spawnXFan(sysMarsmesh, n)
			var sender *mesh.Node
			if err == nil {
				closers = append(closers, x.Close)
				if sender, err = newMeshNode("127.0.0.1", b.fleets[sysMarsmesh].eps[0]); err == nil {
					closers = append(closers, sender.Shutdown)
				}
			}
			for _, l := range append(slices.Clone(b.fanLimits), fanFlat) {
				if err != nil {
					skip(sysMarsmesh, "marsmesh SendMany", l, "setup: "+err.Error())
					continue
				}
				cases = append(cases, &xfanCase{system: sysMarsmesh, name: "marsmesh SendMany", limit: l, x: x,
					send: func(m []byte) error { return sender.SendMany(cmdSink, x.addrs, m, l) }})
			}
		}
		if !b.skipSystem(sysNATS) {
			x, err := b.spawnXFan(sysNATS, n)
			var pub *nats.Conn
			if err == nil {
				closers = append(closers, x.Close)
				if pub, err = natsConnect(b.fleets[sysNATS].eps[0]); err == nil {
					closers = append(closers, func() error { pub.Close(); return nil })
				}
			}
			if err != nil {
				skip(sysNATS, "NATS publish", 0, "setup: "+err.Error())
			} else {
				cases = append(cases, &xfanCase{system: sysNATS, name: "NATS publish", x: x,
					send: func(m []byte) error { return pub.Publish(natsFanSubject, m) }})
			}
		}
		for _, c := range cases {
			_, c.err = c.x.run(b.fanPayload, 10, 0, time.Second, c.send) // warm-up: every session
		}
		rounds := (b.fanRounds + b.xrounds - 1) / b.xrounds
		d := b.duration / time.Duration(b.xrounds)
		turns(len(cases), b.xrounds, func(i, _ int) {
			c := cases[i]
			if c.err != nil {
				return
			}
			s0 := takeSnap(c.x.pids)
			lat, err := c.x.run(b.fanPayload, 2, rounds, d, c.send)
			cs := takeSnap(c.x.pids).since(s0)
			c.err = err
			var el time.Duration
			for _, v := range lat {
				el += v
			}
			f := roundFig(int64(len(lat)), 0, el, lat, cs)
			if len(lat) > 0 { // counters per delivered message
				per := float64(len(lat) * n)
				f.Ctx, f.Dgrams, f.Segs = float64(cs.Ctx)/per, float64(cs.UDPOut)/per, float64(cs.TCPOut)/per
				f.CPUPerM = cs.CPU.Seconds() / per * 1e6
			}
			c.rounds = append(c.rounds, f)
		})
		for _, c := range cases {
			rec := Record{Suite: "xfanout", System: c.system, Name: c.name, Nodes: n, Limit: c.limit, Payload: b.fanPayload,
				Procs: len(c.x.pids)}
			if c.err != nil {
				rec.Err = c.err.Error()
			} else {
				rec.fromRounds(c.rounds)
			}
			b.add(rec)
		}
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				logf("fan-out close: %v", err)
			}
		}
	}
}
