package rudp

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestAcksRideOnReplies: in a request/response exchange the acks a packet
// owes wait for the reply (or the next request) to carry them, so an
// exchange costs about two datagrams, not three. The bound is loose: an
// ack whose reply takes longer than ackDelay (a loaded machine) still goes
// alone.
func TestAcksRideOnReplies(t *testing.T) {
	srvBox, cliBox := newInbox(), newInbox()
	var srvp atomic.Pointer[Transport]
	scfg := srvBox.config(Config{})
	scfg.OnMessage = func(from netip.AddrPort, kind byte, payload []byte, _ bool) {
		srvp.Load().SendMsg(context.Background(), from, kind, nil, payload, SendOptions{NoWait: true})
	}
	srv, err := Listen("127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	srvp.Store(srv)
	defer srv.Close()
	replies := make(chan struct{}, 1)
	ccfg := cliBox.config(Config{})
	ccfg.OnMessage = func(netip.AddrPort, byte, []byte, bool) { replies <- struct{}{} }
	cli, err := Listen("127.0.0.1:0", ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	exchange := func(n int) {
		for i := range n {
			if err := cli.Send(srv.LocalAddr(), 7, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-replies:
			case <-time.After(10 * time.Second):
				t.Fatalf("no reply to request %d", i)
			}
		}
	}
	exchange(20) // handshake and warm-up
	time.Sleep(2 * ackDelay)
	before := cli.Stats().PacketsOut + srv.Stats().PacketsOut
	const n = 300
	exchange(n)
	per := float64(cli.Stats().PacketsOut+srv.Stats().PacketsOut-before) / n
	t.Logf("%.2f datagrams per exchange", per)
	if per > 2.6 {
		t.Errorf("%.2f datagrams per request/response exchange, want about 2 (3 if acks went alone)", per)
	}
}
