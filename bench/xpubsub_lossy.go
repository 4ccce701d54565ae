package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The lossy pub-sub suite (xpubsub-lossy, opt-in; root): the publisher in
// network namespace A (a "ps-pub" child), lossySubs subscriber processes
// in namespace B, joined by the lossy suite's link (lossy.go); MARS in B,
// nats-server in A (see suiteLossyPubsub). Each round the bench asks the publisher to
// publish one message; the publisher answers with its clock at the
// publish call, every subscriber child prints GOT with its clock once its
// subscriber has it, and the round's time is the latest GOT minus that.

const lossySubs = 8

// psPublisher is a ps-pub child's publisher.
type psPublisher struct {
	publish func([]byte) error
	known   func() int // subscribers the publisher knows (marsmesh), or -1
	close   func() error
}

// newPSPublisher connects a publisher of system key from host to ep (MARS
// or the NATS URL).
func newPSPublisher(key, host, ep string) (*psPublisher, error) {
	if key == sysNATS {
		nc, err := natsConnect(ep)
		if err != nil {
			return nil, err
		}
		return &psPublisher{
			publish: func(m []byte) error {
				if err := nc.Publish(psFanTopic, m); err != nil {
					return err
				}
				return nc.FlushTimeout(5 * time.Second)
			},
			known: func() int { return -1 },
			close: func() error { nc.Close(); return nil },
		}, nil
	}
	n, err := newMeshNode(host, ep)
	if err != nil {
		return nil, err
	}
	return &psPublisher{
		publish: func(m []byte) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return n.Publish(ctx, psFanTopic, m)
		},
		known: func() int {
			k := 0
			for _, ni := range n.TopicStats().Interest {
				for _, p := range ni.Patterns {
					if p == psFanTopic {
						k++
					}
				}
			}
			return k
		},
		close: n.Shutdown,
	}, nil
}

// psPubRequest answers a ps-pub child's request: "pub ROUND PAYLOAD" ->
// "SENT <Unix ns at the call>" or "ERR ...", "known" -> subscribers known.
func psPubRequest(p *psPublisher, f []string) string {
	switch {
	case len(f) == 3 && f[0] == "pub":
		round, _ := strconv.ParseUint(f[1], 10, 64)
		size, _ := strconv.Atoi(f[2])
		msg := make([]byte, max(size, 8))
		binary.BigEndian.PutUint64(msg, round)
		at := time.Now().UnixNano()
		if err := p.publish(msg); err != nil {
			return "ERR " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		return fmt.Sprintf("SENT %d", at)
	case len(f) == 1 && f[0] == "known":
		return strconv.Itoa(p.known())
	}
	return fmt.Sprintf("ERR bad request %q", strings.Join(f, " "))
}

// lossyPS is one system's processes in the lossy pub-sub suite.
type lossyPS struct {
	key   string
	f     *fleet
	pub   *child
	subs  []*child
	round uint64
	err   string
	lat   []time.Duration
	figs  []RoundFig
}

func (l *lossyPS) close() {
	for _, c := range l.subs {
		c.Close()
	}
	if l.pub != nil {
		l.pub.Close()
	}
	if l.f != nil {
		l.f.Close()
	}
}

// one publishes one round and returns its time until every subscriber has it.
func (l *lossyPS) one(payload int, wait time.Duration) (time.Duration, error) {
	l.round++
	line, err := l.pub.ask(fmt.Sprintf("pub %d %d", l.round, payload), wait)
	if err != nil {
		return 0, err
	}
	var sent int64
	if _, err := fmt.Sscanf(line, "SENT %d", &sent); err != nil {
		return 0, fmt.Errorf("publisher: %s", line)
	}
	var last int64
	for _, c := range l.subs {
		for {
			line, err := c.next(wait)
			if err != nil {
				return 0, fmt.Errorf("round %d: %v", l.round, err)
			}
			var id uint64
			var ns int64
			if _, err := fmt.Sscanf(line, "GOT %d %d", &id, &ns); err == nil && id == l.round {
				last = max(last, ns)
				break
			}
		}
	}
	return time.Duration(last - sent), nil
}

func (b *bench) suiteLossyPubsub() {
	keys := []string{}
	for _, k := range []string{sysMarsmesh, sysNATS} {
		if !b.skipSystem(k) {
			keys = append(keys, k)
		}
	}
	name := map[string]string{sysMarsmesh: "marsmesh Publish", sysNATS: "NATS publish"}
	payload := b.fanPayload
	fail := func(msg string) {
		for _, loss := range b.lossRates {
			for _, k := range keys {
				b.add(Record{Suite: "xpubsub-lossy", System: k, Name: name[k], Payload: payload, Nodes: lossySubs, Loss: loss, Err: msg})
			}
		}
	}
	if why := lossyUnavailable(); why != "" {
		logf("lossy pub-sub suite skipped: %s", why)
		fail("skipped: " + why)
		return
	}
	link, err := newLossLink()
	if err != nil {
		fail("setup: " + err.Error())
		return
	}
	defer link.Close()
	var lives []*lossyPS
	defer func() {
		for _, l := range lives {
			l.close()
		}
	}()
	for _, k := range keys {
		l := &lossyPS{key: k}
		lives = append(lives, l)
		err := func() error {
			var err error
			// nats-server sits with the publisher: the publish itself
			// crosses no lossy link, each delivery to a subscriber does,
			// as each marsmesh delivery does. (A broker on a third host
			// would add a lossy hop; this is the kinder placement for NATS.)
			ns, ip := link.nsB, lossIPB
			if k == sysNATS {
				ns, ip = link.nsA, lossIPA
			}
			if l.f, err = spawnFleet(k, ns, ip); err != nil {
				return err
			}
			if l.pub, err = startChild(link.nsA, "ps-pub", k, lossIPA, l.f.eps[0]); err != nil {
				return err
			}
			for range lossySubs {
				var c *child
				if k == sysMarsmesh {
					c, err = startChild(link.nsB, "mesh-topic-subs", lossIPB, l.f.eps[0], "1")
				} else {
					c, err = startChild(link.nsB, "nats-topic-subs", l.f.eps[0], "1")
				}
				if err != nil {
					return err
				}
				l.subs = append(l.subs, c)
			}
			for deadline := time.Now().Add(20 * time.Second); k == sysMarsmesh; {
				line, err := l.pub.ask("known", childReplyWait)
				if err != nil {
					return err
				}
				if v, _ := strconv.Atoi(line); v >= lossySubs {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("the publisher knows %s of %d subscribers after 20 s", line, lossySubs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		}()
		if err != nil {
			l.err = "setup: " + err.Error()
		}
	}
	rounds := (b.fanRounds + b.xrounds - 1) / b.xrounds
	d := max(4*b.duration/time.Duration(b.xrounds), time.Second)
	for _, loss := range b.lossRates {
		if err := link.setLoss(loss); err != nil {
			for _, l := range lives {
				b.add(Record{Suite: "xpubsub-lossy", System: l.key, Name: name[l.key], Payload: payload, Nodes: lossySubs, Loss: loss, Err: "setup: " + err.Error()})
			}
			continue
		}
		for _, l := range lives {
			l.lat, l.figs = nil, nil
			for i := 0; i < 10 && l.err == ""; i++ { // warm-up
				if _, err := l.one(payload, 10*time.Second); err != nil {
					l.err = "warm-up: " + err.Error()
				}
			}
		}
		turns(len(lives), b.xrounds, func(i, _ int) {
			l := lives[i]
			if l.err != "" {
				return
			}
			var lat []time.Duration
			start := time.Now()
			for j := 0; j < rounds && time.Since(start) < d; j++ {
				v, err := l.one(payload, 10*time.Second)
				if err != nil {
					l.err = err.Error()
					return
				}
				lat = append(lat, v)
			}
			l.lat = append(l.lat, lat...)
			l.figs = append(l.figs, roundFig(int64(len(lat)), 0, time.Since(start), lat, xcost{}))
		})
		for _, l := range lives {
			rec := Record{Suite: "xpubsub-lossy", System: l.key, Name: name[l.key], Payload: payload, Nodes: lossySubs,
				Loss: loss, Impair: link.method, Err: l.err, Procs: 2 + len(l.subs)}
			if rec.Err == "" {
				rec.fromRounds(l.figs)
				if len(l.lat) > 0 { // tails over every round, not medians of rounds
					lat := Summarize(l.lat)
					rec.Lat = &lat
				}
			}
			b.add(rec)
		}
	}
}

// xPubsubLossyTable renders the lossy pub-sub suite.
func xPubsubLossyTable(b *strings.Builder, run Run) {
	rs := recs(run, "xpubsub-lossy")
	if len(rs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Pub-sub over a lossy link (%d subscriber processes, time to all, µs: p50 / p99 / p99.9)\n\n", lossySubs)
	w("The publisher (and nats-server) in one network namespace, the subscribers (and MARS) in another, joined by the\n")
	w("lossy suite's link (%s): every delivery crosses it once.\n", rs[0].Impair)
	w("Tails over every round.\n\n")
	w("| loss each way | marsmesh Publish | NATS publish | p99 ratio |\n| ---: | ---: | ---: | ---: |\n")
	for _, loss := range distinctLoss(rs) {
		var m, s *Record
		for i := range run.Records {
			x := &run.Records[i]
			if x.Suite == "xpubsub-lossy" && x.Loss == loss {
				if x.System == sysMarsmesh {
					m = x
				} else if x.System == sysNATS {
					s = x
				}
			}
		}
		cell := func(r *Record) string {
			if !r.ok() || r.Lat == nil {
				return cellErr(r)
			}
			return fmtUs(r.Lat.P50) + " / " + fmtUs(r.Lat.P99) + " / " + fmtUs(r.Lat.P999)
		}
		ratio := "–"
		if m.ok() && s.ok() && m.Lat != nil && s.Lat != nil && s.Lat.P99 > 0 {
			ratio = fmtRatio(m.Lat.P99 / s.Lat.P99)
		}
		w("| %g %% | %s | %s | %s |\n", loss, cell(m), cell(s), ratio)
	}
	w("\n")
	failures(b, rs)
}
