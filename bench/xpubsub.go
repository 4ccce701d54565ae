package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
	"github.com/nats-io/nats.go"
)

// The cross-process pub-sub suite (xpubsub, opt-in): a publisher in the
// bench process, subscribers in child processes (-fanprocs as for xfanout:
// default one process per subscriber).
//
//   - publish: marsmesh Publish (the subscribers' Subscribe) against NATS
//     publish to subscriber connections. Time to all: as xfanout (a child
//     prints "GOT <round> <Unix ns>" once all its subscribers have a
//     round's message). Rate: a batch of messages published back to back,
//     counted until every subscriber has all of them (a child prints
//     "BATCH <id> <Unix ns>"); messages per second.
//   - request: Request to a queue group of every subscriber against NATS
//     request to a queue group; p50/p99 at c=1, requests/s at c=16.

const (
	psFanTopic  = "bench.fan"
	psRateTopic = "bench.rate"
	psReqTopic  = "bench.req"
	psGroup     = "workers"
)

// rateSink counts, in a child, the messages of the current rate batch
// ([batch u64][count u32] first) and prints BATCH once its k subscribers
// have every one.
type rateSink struct {
	mu    sync.Mutex
	k     int
	batch uint64
	got   int
}

func (s *rateSink) receive(p []byte) {
	if len(p) < 12 {
		return
	}
	id, count := binary.BigEndian.Uint64(p), int(binary.BigEndian.Uint32(p[8:]))
	s.mu.Lock()
	defer s.mu.Unlock()
	if id > s.batch {
		s.batch, s.got = id, 0
	}
	if id != s.batch {
		return
	}
	if s.got++; s.got == s.k*count {
		say("BATCH %d %d\n", id, time.Now().UnixNano())
	}
}

// meshTopicSubs starts k marsmesh nodes (in a child), each subscribed to
// the fan-out and rate topics and a member of the request queue group.
func meshTopicSubs(host, marsAddr string, k int) (string, func() error, error) {
	fan, rate := &fanSink{want: k}, &rateSink{k: k}
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
		if err == nil {
			nodes = append(nodes, n)
			_, err = n.Subscribe(psFanTopic, func(m *mesh.Message) { fan.receive(m.Payload) })
		}
		if err == nil {
			_, err = n.Subscribe(psRateTopic, func(m *mesh.Message) { rate.receive(m.Payload) })
		}
		if err == nil {
			_, err = n.QueueSubscribe(psReqTopic, psGroup, func(m *mesh.Message) { m.Respond(m.Payload) })
		}
		if err != nil {
			stop()
			return "", nil, err
		}
		addrs = append(addrs, n.GetMyEndPoint())
	}
	return strings.Join(addrs, ","), stop, nil
}

// natsTopicSubs is meshTopicSubs for NATS: k connections.
func natsTopicSubs(url string, k int) (func() error, error) {
	fan, rate := &fanSink{want: k}, &rateSink{k: k}
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
			_, err = nc.Subscribe(psFanTopic, func(m *nats.Msg) { fan.receive(m.Data) })
		}
		if err == nil {
			_, err = nc.Subscribe(psRateTopic, func(m *nats.Msg) { rate.receive(m.Data) })
		}
		if err == nil {
			_, err = nc.QueueSubscribe(psReqTopic, psGroup, func(m *nats.Msg) { m.Respond(m.Data) })
		}
		if err == nil {
			err = nc.Flush()
		}
		if err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// spawnXPubsub starts n subscribers of a system in child processes.
func (b *bench) spawnXPubsub(key string, n int) (*xfan, error) {
	return b.spawnSubs(key, n, "mesh-topic-subs", "nats-topic-subs", false)
}

// rate publishes count messages back to back and returns the time until
// every subscriber has all of them.
func (x *xfan) rate(batch uint64, count, payload int, send func([]byte) error) (time.Duration, error) {
	msg := make([]byte, max(payload, 12))
	binary.BigEndian.PutUint64(msg, batch)
	binary.BigEndian.PutUint32(msg[8:], uint32(count))
	start := time.Now()
	for range count {
		if err := send(msg); err != nil {
			return 0, err
		}
	}
	var last int64
	for _, c := range x.sinks {
		for {
			line, err := c.next(30 * time.Second)
			if err != nil {
				return 0, fmt.Errorf("batch %d: %v", batch, err)
			}
			var id uint64
			var ns int64
			if _, err := fmt.Sscanf(line, "BATCH %d %d", &id, &ns); err == nil && id == batch {
				last = max(last, ns)
				break
			}
		}
	}
	return time.Unix(0, last).Sub(start), nil
}

// requests runs count requests (or until d passes) on conc goroutines and
// returns their latencies and the time it took.
func requests(conc, count int, d time.Duration, req func() error) ([]time.Duration, time.Duration, int64, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var errs int64
	var first error
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	per := max(count/conc, 1)
	for range conc {
		wg.Go(func() {
			for i := 0; i < per && time.Now().Before(deadline); i++ {
				t0 := time.Now()
				err := req()
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if errs > int64(len(lat)) {
		return lat, time.Since(start), errs, first
	}
	return lat, time.Since(start), errs, nil
}

// xpsCase is one system's pub-sub cases for one subscriber count.
type xpsCase struct {
	system  string
	x       *xfan
	publish func([]byte) error
	request func([]byte) error
	err     error
	pub     []RoundFig // time to all and rate
	req1    []RoundFig // requests at c=1
	req16   []RoundFig // requests at c=16
	batch   uint64
}

func (b *bench) suiteXPubsub() {
	for _, n := range b.psNodes {
		var cases []*xpsCase
		var closers []func() error
		if !b.skipSystem(sysMarsmesh) {
			c := &xpsCase{system: sysMarsmesh}
			var pub *mesh.Node
			f, err := b.fleet(sysMarsmesh)
			if err == nil {
				// The publisher first, so every Subscribe pushes its interest to it.
				if pub, err = newMeshNode("127.0.0.1", f.eps[0]); err == nil {
					closers = append(closers, pub.Shutdown)
				}
			}
			if err == nil {
				if c.x, err = b.spawnXPubsub(sysMarsmesh, n); err == nil {
					closers = append(closers, c.x.Close)
					err = waitInterest(pub, n)
				}
			}
			c.err = err
			if err == nil {
				c.publish = func(m []byte) error {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					topic := psFanTopic
					if len(m) >= 12 && binary.BigEndian.Uint32(m[8:]) > 0 && m[0] == 0xBA {
						topic = psRateTopic
					}
					return pub.Publish(ctx, topic, m)
				}
				c.request = func(m []byte) error {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_, err := pub.Request(ctx, psReqTopic, m)
					return err
				}
			}
			cases = append(cases, c)
		}
		if !b.skipSystem(sysNATS) {
			c := &xpsCase{system: sysNATS}
			var pub *nats.Conn
			var err error
			if c.x, err = b.spawnXPubsub(sysNATS, n); err == nil {
				closers = append(closers, c.x.Close)
				if pub, err = natsConnect(b.fleets[sysNATS].eps[0]); err == nil {
					closers = append(closers, func() error { pub.Close(); return nil })
				}
			}
			c.err = err
			if err == nil {
				c.publish = func(m []byte) error {
					subject := psFanTopic
					if len(m) >= 12 && binary.BigEndian.Uint32(m[8:]) > 0 && m[0] == 0xBA {
						subject = psRateTopic
					}
					return pub.Publish(subject, m)
				}
				c.request = func(m []byte) error {
					_, err := pub.Request(psReqTopic, m, 5*time.Second)
					return err
				}
			}
			cases = append(cases, c)
		}
		for _, c := range cases {
			if c.err == nil {
				_, c.err = c.x.run(b.fanPayload, 10, 0, time.Second, c.publish) // warm-up: every session
			}
		}
		rounds := (b.fanRounds + b.xrounds - 1) / b.xrounds
		batch := b.fanRounds * 10
		d := b.duration / time.Duration(b.xrounds)
		req := make([]byte, b.fanPayload)
		turns(len(cases), b.xrounds, func(i, _ int) {
			c := cases[i]
			if c.err != nil {
				return
			}
			s0 := takeSnap(c.x.pids)
			lat, err := c.x.run(b.fanPayload, 2, rounds, d, c.publish)
			if err != nil {
				c.err = err
				return
			}
			// Rate batches are told apart by their first byte (0xBA) and a
			// count; their ids grow with the batch.
			c.batch++
			el, err := c.x.rate(0xBA<<56|c.batch, batch, b.fanPayload, c.publish)
			cs := takeSnap(c.x.pids).since(s0)
			if err != nil {
				c.err = err
				return
			}
			f := roundFig(int64(batch), 0, el, lat, cs)
			per := float64((len(lat) + batch) * n)
			f.Ctx, f.Dgrams, f.Segs = float64(cs.Ctx)/per, float64(cs.UDPOut)/per, float64(cs.TCPOut)/per
			f.CPUPerM = cs.CPU.Seconds() / per * 1e6
			c.pub = append(c.pub, f)
			for _, conc := range []int{1, 16} {
				r0 := takeSnap(c.x.pids)
				lat, el, errs, err := requests(conc, rounds*conc, d, func() error { return c.request(req) })
				rc := takeSnap(c.x.pids).since(r0)
				if err != nil {
					c.err = err
					return
				}
				rf := roundFig(int64(len(lat)), errs, el, lat, rc)
				if conc == 1 {
					c.req1 = append(c.req1, rf)
				} else {
					c.req16 = append(c.req16, rf)
				}
			}
		})
		for _, c := range cases {
			name := map[string]string{sysMarsmesh: "marsmesh Publish", sysNATS: "NATS publish"}[c.system]
			rname := map[string]string{sysMarsmesh: "marsmesh Request (queue group)", sysNATS: "NATS request (queue group)"}[c.system]
			procs := 0
			if c.x != nil {
				procs = len(c.x.pids)
			}
			recs := []Record{
				{Suite: "xpubsub", System: c.system, Name: name, Nodes: n, Payload: b.fanPayload, Procs: procs},
				{Suite: "xpubsub-req", System: c.system, Name: rname, Nodes: n, Payload: b.fanPayload, Conc: 1, Procs: procs},
				{Suite: "xpubsub-req", System: c.system, Name: rname, Nodes: n, Payload: b.fanPayload, Conc: 16, Procs: procs},
			}
			for i, rounds := range [][]RoundFig{c.pub, c.req1, c.req16} {
				if c.err != nil {
					recs[i].Err = c.err.Error()
				} else {
					recs[i].fromRounds(rounds)
				}
				b.add(recs[i])
			}
		}
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				logf("pub-sub close: %v", err)
			}
		}
	}
}

// waitInterest waits (up to 20 s) until pub knows n nodes subscribed to
// the fan-out topic.
func waitInterest(pub *mesh.Node, n int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		k := 0
		for _, ni := range pub.TopicStats().Interest {
			for _, p := range ni.Patterns {
				if p == psFanTopic {
					k++
				}
			}
		}
		if k >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the publisher knows %d of %d subscribers after 20 s", k, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// xPubsubTable renders the xpubsub suite.
func xPubsubTable(b *strings.Builder, run Run) {
	rs := recs(run, "xpubsub")
	if len(rs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	find := func(suite, system string, n, conc int) *Record {
		return run.find(suite, system, rs[0].Payload, conc, n, 0)
	}
	w("## Pub-sub across processes (payload %s)\n\n", sizeName(rs[0].Payload))
	w("A publisher in the bench process; every subscriber (a marsmesh node that called Subscribe, or a NATS connection\n")
	w("subscribed to the subject, with nats-server in a child) in child processes. Time to all: from the publish call\n")
	w("until every subscriber has the message (µs, p50 / p99; each child reports when all its subscribers have it).\n")
	w("Rate: a batch of messages published back to back, messages per second until every subscriber has all of them.\n")
	w("Ratios are medians of per-round ratios (marsmesh / NATS).\n\n")
	w("| subscribers | marsmesh Publish | NATS publish | p99 ratio | marsmesh msgs/s | NATS msgs/s | rate ratio | processes |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, n := range distinct(rs, func(r Record) int { return r.Nodes }) {
		m, s := find("xpubsub", sysMarsmesh, n, 0), find("xpubsub", sysNATS, n, 0)
		procs := 0
		if m != nil {
			procs = m.Procs
		}
		w("| %d | %s | %s | %s | %s | %s | %s | %d |\n", n, cellP50P99(m), cellP50P99(s), xratio(m, s, fP99), cellRate(m), cellRate(s), xratio(m, s, fRate), procs)
	}
	w("\n")
	failures(b, rs)
	rq := recs(run, "xpubsub-req")
	if len(rq) == 0 {
		return
	}
	w("### Queue-group request/reply (every subscriber is a member; c=1: µs p50 / p99; c=16: requests/s)\n\n")
	w("| members | marsmesh c=1 | NATS c=1 | p99 ratio | marsmesh c=16 | NATS c=16 | rate ratio |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, n := range distinct(rq, func(r Record) int { return r.Nodes }) {
		m1, s1 := find("xpubsub-req", sysMarsmesh, n, 1), find("xpubsub-req", sysNATS, n, 1)
		m16, s16 := find("xpubsub-req", sysMarsmesh, n, 16), find("xpubsub-req", sysNATS, n, 16)
		w("| %d | %s | %s | %s | %s | %s | %s |\n", n, cellP50P99(m1), cellP50P99(s1), xratio(m1, s1, fP99), cellRate(m16), cellRate(s16), xratio(m16, s16, fRate))
	}
	w("\n")
	failures(b, rq)
}

// cellP50P99 is a report cell of a record's p50 / p99 in µs (or its error).
func cellP50P99(r *Record) string {
	if !r.ok() || r.Lat == nil {
		return cellErr(r)
	}
	return fmtUs(r.Lat.P50) + " / " + fmtUs(r.Lat.P99)
}

// cellRate is a report cell of a record's rate (or its error).
func cellRate(r *Record) string {
	if !r.ok() {
		return cellErr(r)
	}
	return fmtRate(r.Rate)
}
