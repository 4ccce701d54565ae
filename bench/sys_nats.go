package main

import (
	"errors"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATSServer runs an embedded nats-server on a random loopback port
// with its defaults.
func startNATSServer() (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
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

func natsConnect(ns *server.Server) (*nats.Conn, error) {
	return nats.Connect(ns.ClientURL(), nats.NoReconnect())
}

// natsRPC is request/reply: a responder on its own connection answers with
// the request's data; the requester uses nats.go's shared reply inbox.
type natsRPC struct {
	ns       *server.Server
	req, rep *nats.Conn
}

const natsEchoSubject = "bench.echo"

func startNATSRPC(int) (rpcTarget, error) {
	ns, err := startNATSServer()
	if err != nil {
		return nil, err
	}
	t := &natsRPC{ns: ns}
	if t.rep, err = natsConnect(ns); err == nil {
		_, err = t.rep.Subscribe(natsEchoSubject, func(m *nats.Msg) { m.Respond(m.Data) })
	}
	if err == nil {
		err = t.rep.Flush()
	}
	if err == nil {
		t.req, err = natsConnect(ns)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
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
	stopNATSServer(t.ns)
	return nil
}
