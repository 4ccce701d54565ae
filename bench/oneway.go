package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
)

// onewayTarget is one system's one-way path: a sender and a receiver that
// counts deliveries.
type onewayTarget interface {
	// Send sends one message; it is called from one goroutine.
	Send(msg []byte) error
	// Flush pushes out what the sender buffered (bounded).
	Flush() error
	// deliveries is how many messages the receiver counted so far, and
	// when it counted the last one.
	deliveries() (int64, time.Time)
	Close() error
}

type onewaySystem struct {
	name  string
	key   string
	lossy bool // delivery is not guaranteed: report loss
	start func(payload int) (onewayTarget, error)
}

func onewaySystems() []onewaySystem {
	return []onewaySystem{
		{name: "marsmesh Send", key: sysMarsmesh, start: startMeshOneWay(true)},
		{name: "marsmesh USend", key: sysMarsmeshUSend, lossy: true, start: startMeshOneWay(false)},
		{name: "gRPC client stream", key: sysGRPC, start: startGRPCOneWay},
		{name: "NATS publish", key: sysNATS, lossy: true, start: startNATSOneWay},
	}
}

// counter counts deliveries at a receiver.
type counter struct {
	n        atomic.Int64
	lastNano atomic.Int64 // monotonic ns since clockBase of the last delivery
}

var clockBase = time.Now()

func (c *counter) add() {
	c.n.Add(1)
	c.lastNano.Store(int64(time.Since(clockBase)))
}

func (c *counter) last() time.Time { return clockBase.Add(time.Duration(c.lastNano.Load())) }

func (c *counter) deliveries() (int64, time.Time) { return c.n.Load(), c.last() }

// onewayResult is what one one-way run measured.
type onewayResult struct {
	Sent, Delivered int64
	Elapsed         time.Duration // first send to last delivery
	Cost            cost
	SendErrors      int64
}

// runOneWay sends up to count messages (for at most d) from one goroutine
// and waits, bounded, for the receiver to count them.
func runOneWay(t onewayTarget, payload int, count int64, d time.Duration, measure bool) onewayResult {
	msg := make([]byte, payload)
	for i := range msg {
		msg[i] = byte(i)
	}
	base, _ := t.deliveries()
	var m costMeter
	if measure {
		m.start()
	}
	start := time.Now()
	deadline := start.Add(d)
	var r onewayResult
	for r.Sent < count {
		if r.Sent%64 == 0 && time.Now().After(deadline) {
			break
		}
		if err := t.Send(msg); err != nil {
			r.SendErrors++
			if r.SendErrors > 1000 {
				break
			}
			continue
		}
		r.Sent++
	}
	t.Flush()
	// Wait until everything arrived, or nothing more arrives for a while,
	// within a hard bound.
	hard := time.Now().Add(max(d/2, 2*time.Second))
	prev, last := t.deliveries()
	quietSince := time.Now()
	for prev-base < r.Sent && time.Now().Before(hard) {
		time.Sleep(2 * time.Millisecond)
		now, l := t.deliveries()
		last = l
		if now != prev {
			prev, quietSince = now, time.Now()
		} else if time.Since(quietSince) > 300*time.Millisecond {
			break
		}
	}
	if measure {
		r.Cost = m.stop()
	}
	r.Delivered = prev - base
	r.Elapsed = last.Sub(start)
	return r
}

// marsmesh: two nodes of one cluster; the receiver counts in a raw command
// handler.

const cmdSink = 101

type meshOneWay struct {
	c        *meshCluster
	addr     string
	reliable bool
	cnt      counter
}

func startMeshOneWay(reliable bool) func(int) (onewayTarget, error) {
	return func(int) (onewayTarget, error) {
		c, err := newMeshCluster(2)
		if err != nil {
			return nil, err
		}
		m := &meshOneWay{c: c, addr: c.nodes[1].GetMyEndPoint(), reliable: reliable}
		c.nodes[1].SetCommandHandler(cmdSink, func([]byte, string) ([]byte, error) {
			m.cnt.add()
			return nil, nil
		})
		return m, nil
	}
}

func (m *meshOneWay) Send(msg []byte) error {
	if m.reliable {
		return m.c.nodes[0].Send(cmdSink, m.addr, msg)
	}
	return m.c.nodes[0].USend(cmdSink, m.addr, msg)
}

func (m *meshOneWay) Flush() error                   { return nil }
func (m *meshOneWay) deliveries() (int64, time.Time) { return m.cnt.deliveries() }
func (m *meshOneWay) Close() error                   { return m.c.Close() }

// gRPC: one client stream; the server's Sink handler counts.

type grpcOneWay struct {
	*grpcPair
	st     grpc.ClientStream
	cancel context.CancelFunc
}

func startGRPCOneWay(int) (onewayTarget, error) {
	p, err := newGRPCPair()
	if err != nil {
		return nil, err
	}
	return grpcStream(p)
}

// grpcStream opens the Sink stream on p (closing p if it cannot).
func grpcStream(p *grpcPair) (*grpcOneWay, error) {
	g := &grpcOneWay{grpcPair: p}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	var err error
	g.st, err = p.cc.NewStream(ctx, &benchServiceDesc.Streams[0], "/bench.Bench/Sink")
	if err != nil {
		cancel()
		p.Close()
		return nil, err
	}
	return g, nil
}

func (g *grpcOneWay) Send(msg []byte) error          { return g.st.SendMsg(&msg) }
func (g *grpcOneWay) Flush() error                   { return nil }
func (g *grpcOneWay) deliveries() (int64, time.Time) { return g.svc.cnt.deliveries() }

func (g *grpcOneWay) Close() error {
	g.st.CloseSend()
	var ack []byte
	err := g.st.RecvMsg(&ack)
	g.cancel()
	return errors.Join(err, g.grpcPair.Close())
}

// NATS: publish on one connection, a subscriber on another counts.

type natsOneWay struct {
	ns       *server.Server
	pub, sub *nats.Conn
	cnt      counter
}

const natsSinkSubject = "bench.sink"

func startNATSOneWay(int) (onewayTarget, error) {
	ns, err := startNATSServer("127.0.0.1")
	if err != nil {
		return nil, err
	}
	t := &natsOneWay{ns: ns}
	if t.sub, err = natsConnect(ns.ClientURL()); err == nil {
		_, err = t.sub.Subscribe(natsSinkSubject, func(*nats.Msg) { t.cnt.add() })
	}
	if err == nil {
		err = t.sub.Flush()
	}
	if err == nil {
		t.pub, err = natsConnect(ns.ClientURL())
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *natsOneWay) Send(msg []byte) error          { return t.pub.Publish(natsSinkSubject, msg) }
func (t *natsOneWay) Flush() error                   { return t.pub.FlushTimeout(3 * time.Second) }
func (t *natsOneWay) deliveries() (int64, time.Time) { return t.cnt.deliveries() }

func (t *natsOneWay) Close() error {
	if t.pub != nil {
		t.pub.Close()
	}
	if t.sub != nil {
		t.sub.Close()
	}
	if t.ns != nil {
		stopNATSServer(t.ns)
	}
	return nil
}
