package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
)

// fleet is the server end of one system in child processes.
type fleet struct {
	key   string
	procs []*child
	eps   []string // what each child printed after READY, in start order
}

// spawnFleet starts the server end of system key on host, in network
// namespace netns ("" for this one): marsmesh a MARS registry and the
// serving node, NATS a nats-server and the responder, the others one
// echo server each.
func spawnFleet(key, netns, host string) (*fleet, error) {
	f := &fleet{key: key}
	step := func(args ...string) error {
		c, err := startChild(netns, args...)
		if err != nil {
			return err
		}
		f.procs = append(f.procs, c)
		f.eps = append(f.eps, c.ready)
		return nil
	}
	var err error
	switch key {
	case sysMarsmesh:
		if err = step("mars", host); err == nil {
			err = step("mesh-node", host, f.eps[0])
		}
	case sysNATS:
		if err = step("nats-server", host); err == nil {
			err = step("nats-responder", f.eps[0])
		}
	case sysGRPC:
		err = step("grpc", host)
	case sysKCP:
		err = step("kcp", host)
	case sysUDP:
		err = step("udp", host)
	default:
		err = fmt.Errorf("no cross-process server for system %q", key)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sink is the child that counts one-way deliveries.
func (f *fleet) sink() *child { return f.procs[len(f.procs)-1] }

func (f *fleet) pids() []int {
	var p []int
	for _, c := range f.procs {
		p = append(p, c.pid())
	}
	return p
}

// Close stops the children in reverse start order.
func (f *fleet) Close() error {
	var errs []error
	for i := len(f.procs) - 1; i >= 0; i-- {
		errs = append(errs, f.procs[i].Close())
	}
	return errors.Join(errs...)
}

// dialRPC is the client end of system key (host: this end's address) for
// a fleet whose children printed eps.
func dialRPC(key, host string, eps []string, payload int) (rpcTarget, error) {
	switch key {
	case sysMarsmesh:
		c, err := meshClient(host, eps)
		if err != nil {
			return nil, err
		}
		return &meshRPC{c: c, addr: eps[1]}, nil
	case sysGRPC:
		p, err := dialGRPC(eps[0])
		if err != nil {
			return nil, err
		}
		return grpcRPC{p}, nil
	case sysNATS:
		nc, err := natsConnect(eps[0])
		if err != nil {
			return nil, err
		}
		return &natsRPC{req: nc}, nil
	case sysKCP:
		return dialKCPRPC(eps[0], payload)
	case sysUDP:
		if payload > maxUDPPayload {
			return nil, fmt.Errorf("%d bytes do not fit a UDP datagram", payload)
		}
		u := &udpRPC{}
		if err := u.dial(eps[0]); err != nil {
			return nil, err
		}
		return u, nil
	}
	return nil, fmt.Errorf("no client for system %q", key)
}

// remoteOneWay is a one-way sender whose receiver counts in a child.
type remoteOneWay struct {
	onewayTarget
	count func() (int64, time.Time)
}

func (r remoteOneWay) deliveries() (int64, time.Time) { return r.count() }

// dialOneWay is the sending end of one-way system key for fleet f.
func dialOneWay(key, host string, f *fleet) (onewayTarget, error) {
	var t onewayTarget
	switch key {
	case sysMarsmesh, sysMarsmeshUSend:
		n, err := newMeshNode(host, f.eps[0])
		if err != nil {
			return nil, err
		}
		t = &meshOneWay{c: &meshCluster{nodes: []*mesh.Node{n}}, addr: f.eps[1], reliable: key == sysMarsmesh}
	case sysGRPC:
		p, err := dialGRPC(f.eps[0])
		if err != nil {
			return nil, err
		}
		if t, err = grpcStream(p); err != nil {
			return nil, err
		}
	case sysNATS:
		nc, err := natsConnect(f.eps[0])
		if err != nil {
			return nil, err
		}
		t = &natsOneWay{pub: nc}
	default:
		return nil, fmt.Errorf("no one-way client for system %q", key)
	}
	return remoteOneWay{onewayTarget: t, count: remoteSink(f.sink())}, nil
}

// meshClient is the client node (at host) of a marsmesh fleet whose
// children printed eps: MARS, then the serving node.
func meshClient(host string, eps []string) (*meshCluster, error) {
	if len(eps) < 2 {
		return nil, errors.New("marsmesh: want the MARS and node addresses")
	}
	n, err := newMeshNode(host, eps[0])
	if err != nil {
		return nil, err
	}
	return &meshCluster{nodes: []*mesh.Node{n}}, nil
}
