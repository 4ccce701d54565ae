package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// meshCluster is an in-process MARS server and mesh nodes on loopback,
// all with the default configuration (port scan from 0, no send buffering).
type meshCluster struct {
	mars  *mars.Server
	nodes []*mesh.Node
}

func newMeshCluster(nodes int) (*meshCluster, error) {
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet})
	if err != nil {
		return nil, err
	}
	c := &meshCluster{mars: srv}
	cfg := config.Default()
	cfg.Port = "0"
	cfg.MarsPort = fmt.Sprint(srv.Addr().Port())
	for range nodes {
		n, err := mesh.New(cfg, meshOptions()...)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	deadline := time.After(10 * time.Second)
	for _, n := range c.nodes {
		select {
		case <-n.Ready():
		case <-deadline:
			c.Close()
			return nil, errors.New("mesh node did not sync with MARS in 10 s")
		}
	}
	// Every node must be part of the cluster (SendRPC refuses otherwise).
	for _, n := range c.nodes {
		for !n.IsPartOfCluster() {
			select {
			case <-deadline:
				c.Close()
				return nil, errors.New("mesh node is not part of the cluster after 10 s")
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return c, nil
}

// newMeshNode starts one node on host (default configuration otherwise)
// that syncs with the MARS server at marsAddr ("host:port"), and waits
// until it is part of the cluster.
func newMeshNode(host, marsAddr string) (*mesh.Node, error) {
	mh, mp, err := net.SplitHostPort(marsAddr)
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Address, cfg.Port, cfg.MarsAddress, cfg.MarsPort = host, "0", mh, mp
	n, err := mesh.New(cfg, meshOptions()...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for !n.IsPartOfCluster() {
		if time.Now().After(deadline) {
			n.Shutdown()
			return nil, errors.New("mesh node is not part of the cluster after 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return n, nil
}

// Close shuts every node down (in parallel: each says goodbye to MARS),
// then MARS.
func (c *meshCluster) Close() error {
	errs := make(chan error, len(c.nodes))
	for _, n := range c.nodes {
		go func() { errs <- n.Shutdown() }()
	}
	var all []error
	for range c.nodes {
		all = append(all, <-errs)
	}
	if c.mars != nil {
		all = append(all, c.mars.Close())
	}
	return errors.Join(all...)
}

// addrs lists the mesh addresses of nodes[from:].
func (c *meshCluster) addrs(from int) []string {
	var a []string
	for _, n := range c.nodes[from:] {
		a = append(a, n.GetMyEndPoint())
	}
	return a
}

const cmdEcho = 100

type meshRPC struct {
	c      *meshCluster
	addr   string
	server *child // across processes: the serving node's child, asked for its counters
}

// retransmits is the reliable segments both ends sent again so far, or
// -1 when unknown (another system, or the server did not say).
func retransmits(t rpcTarget) float64 {
	m, ok := t.(*meshRPC)
	if !ok {
		return -1
	}
	total := 0.0
	for _, n := range m.c.nodes {
		total += nodeRetransmits(n)
	}
	if m.server != nil {
		line, err := m.server.ask("retx", childReplyWait)
		var v float64
		if _, err2 := fmt.Sscan(line, &v); err != nil || err2 != nil {
			return -1
		}
		total += v
	}
	return total
}

// nodeRetransmits reads a node's transport retransmission counter from
// its metrics (mesh.Node.Collector).
func nodeRetransmits(n *mesh.Node) float64 {
	reg := prometheus.NewRegistry()
	if err := reg.Register(n.Collector()); err != nil {
		return 0
	}
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "marsmesh_transport_retransmissions_total" && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func startMeshRPC(int) (rpcTarget, error) {
	c, err := newMeshCluster(2)
	if err != nil {
		return nil, err
	}
	c.nodes[1].HandleRPC(cmdEcho, func(data []byte, _ string) ([]byte, error) { return data, nil })
	return &meshRPC{c: c, addr: c.nodes[1].GetMyEndPoint()}, nil
}

func (m *meshRPC) Prepare(int) error { return nil }

func (m *meshRPC) Call(req []byte) error {
	resp, err := m.c.nodes[0].SendRPC(cmdEcho, m.addr, req)
	if err != nil {
		return err
	}
	return checkEcho(len(resp), len(req))
}

func (m *meshRPC) Close() error { return m.c.Close() }

// meshOptions are the options of every bench node: with -inline (passed
// to the children as MMBENCH_INLINE=1) also mesh.WithInlineHandlers, with
// -trace (MMBENCH_TRACE=1) a tracer provider that samples every span.
func meshOptions() []mesh.Option {
	o := []mesh.Option{mesh.WithLogger(quiet)}
	if os.Getenv("MMBENCH_INLINE") == "1" {
		o = append(o, mesh.WithInlineHandlers())
	}
	if os.Getenv("MMBENCH_TRACE") == "1" {
		o = append(o, mesh.WithTracerProvider(benchTracer()))
	}
	return o
}

// benchTracer is the process's tracer provider for -trace: every span
// sampled, a batch span processor as in production, and an exporter that
// drops the spans (the cost of tracing without that of a collector).
var benchTracer = sync.OnceValue(func() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
})
