package main

import (
	"errors"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATSServer runs an embedded nats-server on a random loopback port
// with its defaults.
func startNATSServer(host string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{Host: host, Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats-server not ready in 10 s")
	}
	return ns, nil
}

func stopNATSServer(ns *server.Server) {
	ns.Shutdown()
	ns.WaitForShutdown()
}

func natsConnect(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.NoReconnect())
}

// natsRPC is request/reply: a responder on its own connection answers with
// the request's data; the requester uses nats.go's shared reply inbox.
type natsRPC struct {
	ns       *server.Server
	req, rep *nats.Conn
}

const natsEchoSubject = "bench.echo"

func startNATSRPC(int) (rpcTarget, error) {
	ns, err := startNATSServer("127.0.0.1")
	if err != nil {
		return nil, err
	}
	t := &natsRPC{ns: ns}
	if t.rep, err = natsResponder(ns.ClientURL(), nil); err == nil {
		t.req, err = natsConnect(ns.ClientURL())
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// natsResponder connects to url and answers requests on natsEchoSubject
// with their data; with sink set, it also counts messages on
// natsSinkSubject.
func natsResponder(url string, sink *counter) (*nats.Conn, error) {
	nc, err := natsConnect(url)
	if err != nil {
		return nil, err
	}
	_, err = nc.Subscribe(natsEchoSubject, func(m *nats.Msg) { m.Respond(m.Data) })
	if err == nil && sink != nil {
		_, err = nc.Subscribe(natsSinkSubject, func(*nats.Msg) { sink.add() })
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

func (t *natsRPC) Prepare(int) error { return nil }

func (t *natsRPC) Call(req []byte) error {
	m, err := t.req.Request(natsEchoSubject, req, callTimeout)
	if err != nil {
		return err
	}
	return checkEcho(len(m.Data), len(req))
}

func (t *natsRPC) Close() error {
	if t.req != nil {
		t.req.Close()
	}
	if t.rep != nil {
		t.rep.Close()
	}
	if t.ns != nil {
		stopNATSServer(t.ns)
	}
	return nil
}
