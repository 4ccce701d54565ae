package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
	"google.golang.org/grpc"
)

// The stream suite: one stream between two parties in this process, one
// sender, the receiver counting. 64 B and 1 KiB give the message rate,
// 64 KiB the bulk throughput (MB/s). Each case starts its systems, opens
// one stream per system, and closes the stream and the system at its end.

// streamPayloads are the stream suite's message sizes: rate, rate, bulk.
var streamPayloads = []int{64, 1024, 64 << 10}

func streamSystems() []onewaySystem {
	return []onewaySystem{
		{name: "marsmesh stream", key: sysMarsmesh, start: startMeshStream},
		{name: "gRPC bidi stream", key: sysGRPC, start: startGRPCBidi},
	}
}

func (b *bench) suiteStream() {
	b.onewaySuite("stream", streamSystems(), streamPayloads, b.streamCount)
}

// streamClose is how long closing a stream waits for its receiver to
// drain and end.
const streamClose = 10 * time.Second

// marsmesh: OpenStream from one node to a HandleStream handler on the
// other, which counts every message it receives.

const cmdStream = 102

type meshStream struct {
	c      *meshCluster
	s      *mesh.Stream
	cancel context.CancelFunc
	cnt    *counter
}

// countStream is the HandleStream handler that counts every message into
// cnt until the sender closes its side.
func countStream(cnt *counter) func(context.Context, *mesh.Stream) error {
	return func(_ context.Context, s *mesh.Stream) error {
		for {
			if _, err := s.Recv(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			cnt.add()
		}
	}
}

func startMeshStream(int) (onewayTarget, error) {
	c, err := newMeshCluster(2)
	if err != nil {
		return nil, err
	}
	cnt := &counter{}
	c.nodes[1].HandleStream(cmdStream, countStream(cnt))
	m, err := openMeshStream(c, c.nodes[1].GetMyEndPoint())
	if err != nil {
		return nil, err
	}
	m.cnt = cnt
	return m, nil
}

// openMeshStream opens a stream from c's first node to the countStream
// handler at addr; on failure it closes c.
func openMeshStream(c *meshCluster, addr string) (*meshStream, error) {
	m := &meshStream{c: c, cnt: &counter{}}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	var err error
	if m.s, err = c.nodes[0].OpenStream(ctx, cmdStream, addr, nil); err != nil {
		cancel()
		c.Close()
		return nil, err
	}
	return m, nil
}

func (m *meshStream) Send(msg []byte) error          { return m.s.Send(msg) }
func (m *meshStream) Flush() error                   { return nil }
func (m *meshStream) deliveries() (int64, time.Time) { return m.cnt.deliveries() }

// Close ends the stream (CloseSend, then the handler's return reaches Recv
// as io.EOF; bounded), then the cluster.
func (m *meshStream) Close() error {
	err := m.s.CloseSend()
	done := make(chan error, 1)
	go func() {
		_, e := m.s.Recv()
		done <- e
	}()
	select {
	case e := <-done:
		if e != io.EOF {
			err = errors.Join(err, fmt.Errorf("stream end: %w", e))
		}
	case <-time.After(streamClose):
		err = errors.Join(err, errors.New("stream did not end within 10 s of CloseSend"))
		m.s.Close()
		m.cancel()
		<-done // Close and cancel end the waiting Recv
	}
	m.s.Close()
	m.cancel()
	return errors.Join(err, m.c.Close())
}

// gRPC: one bidirectional stream on the Bidi method; the server counts
// what it receives and ends the stream at the client's CloseSend.

type grpcBidi struct {
	*grpcPair
	st     grpc.ClientStream
	cancel context.CancelFunc
}

func startGRPCBidi(int) (onewayTarget, error) {
	p, err := newGRPCPair()
	if err != nil {
		return nil, err
	}
	return openGRPCBidi(p)
}

// openGRPCBidi opens a Bidi stream on p; on failure it closes p.
func openGRPCBidi(p *grpcPair) (*grpcBidi, error) {
	ctx, cancel := context.WithCancel(context.Background())
	g := &grpcBidi{grpcPair: p, cancel: cancel}
	var err error
	if g.st, err = p.cc.NewStream(ctx, &benchServiceDesc.Streams[1], "/bench.Bench/Bidi"); err != nil {
		cancel()
		p.Close()
		return nil, err
	}
	return g, nil
}

func (g *grpcBidi) Send(msg []byte) error          { return g.st.SendMsg(&msg) }
func (g *grpcBidi) Flush() error                   { return nil }
func (g *grpcBidi) deliveries() (int64, time.Time) { return g.svc.cnt.deliveries() }

// dialStream opens the sending end of stream system key towards a fleet
// whose children printed eps (host: this end's address); its deliveries
// are the fleet's to count.
func dialStream(key, host string, eps []string) (onewayTarget, error) {
	switch key {
	case sysMarsmesh:
		c, err := meshClient(host, eps)
		if err != nil {
			return nil, err
		}
		return openMeshStream(c, eps[1])
	case sysGRPC:
		p, err := dialGRPC(eps[0])
		if err != nil {
			return nil, err
		}
		return openGRPCBidi(p)
	}
	return nil, fmt.Errorf("no stream client for system %q", key)
}

// Close half-closes the stream and waits (bounded) for the server to end
// it, then closes the connection and the server.
func (g *grpcBidi) Close() error {
	err := g.st.CloseSend()
	done := make(chan error, 1)
	go func() {
		var m []byte
		done <- g.st.RecvMsg(&m)
	}()
	select {
	case e := <-done:
		if e != io.EOF {
			err = errors.Join(err, fmt.Errorf("stream end: %w", e))
		}
	case <-time.After(streamClose):
		err = errors.Join(err, errors.New("stream did not end within 10 s of CloseSend"))
		g.cancel()
		<-done // cancel ends the waiting RecvMsg
	}
	g.cancel()
	return errors.Join(err, g.grpcPair.Close())
}

// streamTable renders the stream suite: msgs/s and MB/s per system.
func streamTable(b *strings.Builder, run Run) {
	rs := recs(run, "stream")
	if len(rs) == 0 {
		return
	}
	cols := columns(rs)
	fmt.Fprintf(b, "## Streams (one stream, one sender, counted at the receiver)\n\n")
	fmt.Fprintf(b, "Cells: delivered msgs/s and MB/s of payload; 64 B and 1 KiB give the message rate, 64 KiB the bulk throughput.\n\n")
	header(b, []string{"message"}, cols, "marsmesh / best peer")
	for _, p := range distinct(rs, func(r Record) int { return r.Payload }) {
		fmt.Fprintf(b, "| %s |", sizeName(p))
		peers := map[string]float64{}
		mine := nan
		for _, c := range cols {
			r := run.find("stream", c.key, p, 0, 0, 0)
			if r == nil || r.Err != "" {
				fmt.Fprintf(b, " %s |", cellErr(r))
				continue
			}
			fmt.Fprintf(b, " %s/s, %s MB/s |", fmtRate(r.Rate), fmtNum(r.MBps))
			if c.key == sysMarsmesh {
				mine = r.Rate
			} else {
				peers[shortName[c.key]] = r.Rate
			}
		}
		fmt.Fprintf(b, " %s |\n", ratioCell(mine, peers, false))
	}
	b.WriteString("\n")
	failures(b, rs)
}

// The cross-process stream suite (xstream): the receiving end in the
// system's children (marsmesh: the serving node's HandleStream handler,
// gRPC: the server's Bidi method), which count; the sender in this
// process. One stream per system and payload, open for all its rounds.

func (b *bench) suiteXStream() {
	for _, payload := range streamPayloads {
		lives := b.xOneWayStart("xstream", streamSystems(), payload, func(key string, f *fleet) (onewayTarget, error) {
			t, err := dialStream(key, "127.0.0.1", f.eps)
			if err != nil {
				return nil, err
			}
			return remoteOneWay{onewayTarget: t, count: remoteSink(f.sink())}, nil
		})
		b.xOneWayRounds("xstream", lives, payload, countFor(b.streamCount, payload))
	}
}

// xStreamTable renders the cross-process stream suite.
func xStreamTable(b *strings.Builder, run Run) {
	rs := recs(run, "xstream")
	if len(rs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	cols := columns(rs)
	w("## Streams across processes (one stream, one sender, counted at the receiver's process)\n\n")
	w("Cells: delivered msgs/s and MB/s of payload, and per delivered message context switches / packets / CPU µs,\n")
	w("as above; 64 B and 1 KiB give the message rate, 64 KiB the bulk throughput.\n\n")
	header(b, []string{"message"}, cols, "marsmesh / gRPC")
	for _, p := range distinct(rs, func(r Record) int { return r.Payload }) {
		w("| %s |", sizeName(p))
		for _, c := range cols {
			r := run.find("xstream", c.key, p, 0, 0, 0)
			if !r.ok() {
				w(" %s |", cellErr(r))
				continue
			}
			w(" %s/s, %s MB/s; %s |", fmtRate(r.Rate), fmtNum(r.MBps), costCell(r))
		}
		w(" %s |\n", xratio(run.find("xstream", sysMarsmesh, p, 0, 0, 0), run.find("xstream", sysGRPC, p, 0, 0, 0), fRate))
	}
	w("\n")
	failures(b, rs)
}
