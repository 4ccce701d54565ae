package rudp

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestPrimeAcks: data sent by a session that owed a delayed ack within
// primeWindow arms the ack timer; data sent by one that did not (a
// one-way sender, or a conversation gone quiet) does not. A primed timer
// that finds nothing owed disarms itself.
func TestPrimeAcks(t *testing.T) {
	a, b := deliveredPair(t)
	s := a.lookup(b.LocalAddr())
	if s == nil {
		t.Fatal("no session")
	}
	armed := func() bool {
		a.ackMu.Lock()
		defer a.ackMu.Unlock()
		return a.ackArmed
	}
	waitDisarmed := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for armed() {
			if time.Now().After(deadline) {
				t.Fatal("the ack timer stays armed")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitDisarmed()
	s.ackDueAt.Store(0) // a never received data: a one-way sender
	a.primeAcks(s)
	if armed() {
		t.Fatal("primed without a conversation")
	}
	s.ackDueAt.Store(a.now() - 2*int64(primeWindow))
	a.primeAcks(s)
	if armed() {
		t.Fatal("primed for a conversation gone quiet")
	}
	s.ackDueAt.Store(a.now())
	a.primeAcks(s)
	if !armed() {
		t.Fatal("not primed in a conversation")
	}
	waitDisarmed() // it fires, finds nothing owed and disarms
}

// TestPrimedExchangeDelivers: in a request/response exchange with primed
// timers, every reply arrives and every ack is eventually sent: after the
// last exchange no session owes acks and nothing is left in flight.
func TestPrimedExchangeDelivers(t *testing.T) {
	var srvp atomic.Pointer[Transport]
	scfg := Config{OnMessage: func(from netip.AddrPort, kind byte, payload []byte, _ bool) {
		srvp.Load().SendMsg(context.Background(), from, kind, nil, payload, SendOptions{NoWait: true})
	}}
	srv := listenUDP(t, scfg)
	srvp.Store(srv)
	replies := make(chan struct{}, 1)
	cli := listenUDP(t, Config{OnMessage: func(netip.AddrPort, byte, []byte, bool) { replies <- struct{}{} }})
	for i := range 200 {
		if err := cli.Send(srv.LocalAddr(), 7, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-replies:
		case <-time.After(10 * time.Second):
			t.Fatalf("no reply to request %d", i)
		}
	}
	queued := func(tr *Transport, to netip.AddrPort) int {
		st, _ := tr.Peer(to)
		return st.Queued
	}
	deadline := time.Now().Add(10 * time.Second)
	for cli.acksOwed.Load() != 0 || srv.acksOwed.Load() != 0 || queued(cli, srv.LocalAddr()) != 0 || queued(srv, cli.LocalAddr()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("acks owed: client %d, server %d; unacknowledged bytes %d, %d", cli.acksOwed.Load(), srv.acksOwed.Load(),
				queued(cli, srv.LocalAddr()), queued(srv, cli.LocalAddr()))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEarlyAckTimerWaits: an ack timer that fires (primed) before an ack
// has waited ackDelay does not send it yet: the session stays queued and
// the timer is armed for the rest; then the ack goes.
func TestEarlyAckTimerWaits(t *testing.T) {
	a, b := deliveredPair(t)
	s := b.lookup(a.LocalAddr())
	quiet := func() bool {
		b.ackMu.Lock()
		defer b.ackMu.Unlock()
		return !b.ackArmed && b.acksOwed.Load() == 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for !quiet() {
		if time.Now().After(deadline) {
			t.Fatal("acks still owed")
		}
		time.Sleep(time.Millisecond)
	}
	// An ack that has just become due, found by a timer armed earlier.
	s.mu.Lock()
	s.ackDue = true
	s.ackDueAt.Store(b.now() + int64(time.Hour)) // it keeps waiting
	b.acksOwed.Add(1)
	s.mu.Unlock()
	b.ackMu.Lock()
	b.ackq = append(b.ackq, s)
	b.ackMu.Unlock()
	b.flushAcks()
	b.ackMu.Lock()
	queued, armed := len(b.ackq), b.ackArmed
	b.ackMu.Unlock()
	if queued != 1 || !armed {
		t.Fatalf("after an early firing: %d queued, armed %v; want 1 and true", queued, armed)
	}
	s.mu.Lock()
	still := s.ackDue
	s.mu.Unlock()
	if !still {
		t.Fatal("an early firing flushed the ack")
	}
	// Once due, the timer (armed for the rest) flushes it.
	s.ackDueAt.Store(b.now() - int64(time.Hour))
	deadline = time.Now().Add(10 * time.Second)
	for b.acksOwed.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the ack was never flushed")
		}
		time.Sleep(time.Millisecond)
	}
}

// deliveredPair returns two UDP transports once a has delivered one
// message to b (both then hold an established session).
func deliveredPair(t *testing.T) (a, b *Transport) {
	t.Helper()
	a = listenUDP(t, Config{})
	bIn := newInbox()
	b = listenUDP(t, bIn.config(Config{}))
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("no message")
	}
	return a, b
}
