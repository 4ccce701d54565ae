package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// roundTracker tells when every receiver has had the message of the
// current round.
type roundTracker struct {
	want     int64
	round    atomic.Uint64
	got      atomic.Int64
	lastNano atomic.Int64
	done     chan uint64
}

func newRoundTracker(receivers int) *roundTracker {
	return &roundTracker{want: int64(receivers), done: make(chan uint64, 1)}
}

// receive is called by every receiver with the message it got.
func (r *roundTracker) receive(p []byte) {
	if len(p) < 8 {
		return
	}
	id := binary.BigEndian.Uint64(p)
	if id != r.round.Load() {
		return // a late copy of an earlier round (never expected)
	}
	if r.got.Add(1) == r.want {
		r.lastNano.Store(int64(time.Since(clockBase)))
		select {
		case r.done <- id:
		default:
		}
	}
}

// run sends rounds with send until count rounds or d pass (after warm
// rounds that are not recorded) and returns each round's time from the
// send call until the last receiver had it.
func (r *roundTracker) run(payload, warm, count int, d time.Duration, send func([]byte) error) ([]time.Duration, error) {
	msg := make([]byte, payload)
	var lat []time.Duration
	deadline := time.Now().Add(d)
	for i := 0; i < warm+count; i++ {
		if i >= warm && time.Now().After(deadline) {
			break
		}
		id := r.round.Load() + 1
		binary.BigEndian.PutUint64(msg, id)
		r.got.Store(0)
		r.round.Store(id)
		start := time.Since(clockBase)
		if err := send(msg); err != nil {
			return lat, err
		}
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			return lat, fmt.Errorf("round %d: %d of %d receivers in 5 s", id, r.got.Load(), r.want)
		}
		if i >= warm {
			lat = append(lat, time.Duration(r.lastNano.Load())-start)
		}
	}
	return lat, nil
}

// meshFanout is a sender node and n receiver nodes of one cluster.
type meshFanout struct {
	c     *meshCluster
	addrs []string
	tr    *roundTracker
}

func startMeshFanout(receivers int) (*meshFanout, error) {
	c, err := newMeshCluster(receivers + 1)
	if err != nil {
		return nil, err
	}
	f := &meshFanout{c: c, addrs: c.addrs(1), tr: newRoundTracker(receivers)}
	for _, n := range c.nodes[1:] {
		n.SetCommandHandler(cmdSink, func(p []byte, _ string) ([]byte, error) {
			f.tr.receive(p)
			return nil, nil
		})
	}
	return f, nil
}

func (f *meshFanout) run(payload, limit, warm, count int, d time.Duration) ([]time.Duration, error) {
	return f.tr.run(payload, warm, count, d, func(msg []byte) error {
		return f.c.nodes[0].SendMany(cmdSink, f.addrs, msg, limit)
	})
}

func (f *meshFanout) Close() error { return f.c.Close() }

// natsFanout is a publisher and n subscribers, each on its own connection.
type natsFanout struct {
	ns   *server.Server
	pub  *nats.Conn
	subs []*nats.Conn
	tr   *roundTracker
}

const natsFanSubject = "bench.fan"

func startNATSFanout(receivers int) (*natsFanout, error) {
	ns, err := startNATSServer("127.0.0.1")
	if err != nil {
		return nil, err
	}
	f := &natsFanout{ns: ns, tr: newRoundTracker(receivers)}
	for range receivers {
		var nc *nats.Conn
		if nc, err = natsConnect(ns.ClientURL()); err != nil {
			break
		}
		f.subs = append(f.subs, nc)
		if _, err = nc.Subscribe(natsFanSubject, func(m *nats.Msg) { f.tr.receive(m.Data) }); err != nil {
			break
		}
		if err = nc.Flush(); err != nil {
			break
		}
	}
	if err == nil {
		f.pub, err = natsConnect(ns.ClientURL())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *natsFanout) run(payload, warm, count int, d time.Duration) ([]time.Duration, error) {
	return f.tr.run(payload, warm, count, d, func(msg []byte) error {
		return f.pub.Publish(natsFanSubject, msg)
	})
}

func (f *natsFanout) Close() error {
	if f.pub != nil {
		f.pub.Close()
	}
	for _, s := range f.subs {
		s.Close()
	}
	stopNATSServer(f.ns)
	return nil
}

var errNoRounds = errors.New("no rounds measured")
