package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
)

// The node's router: every message and session end of the node's
// transport arrives here (on a transport goroutine: nothing here blocks)
// and goes to the component it is for.

// onMessage receives every message of the node's transport (on its read
// goroutine: nothing here blocks).
func (n *Node) onMessage(from netip.AddrPort, kind byte, p []byte, reliable bool) {
	if mars.IsMarsKind(kind) && !reliable {
		n.bad("unreliable MARS message", from) // MARS only speaks on sessions
		return
	}
	if mars.IsMarsKind(kind) {
		n.mc.HandleMessage(from, kind, p, reliable)
		return
	}
	switch kind {
	case kindCommand:
		n.handleCommand(from, p, reliable)
	case kindRequest:
		n.dispatchRequest(from, p, nil, reliable)
	case kindResponse:
		if len(p) > 8 && p[8] == statusDraining {
			n.drainHeard(from, p[responseHeaderSize:])
		}
		n.calls.handleResponse(from, p)
	case kindDrain:
		n.drainHeard(from, p)
	case kindCancel:
		n.handleCancel(from, p)
	case kindFanout:
		n.fan.handleFanout(from, p, reliable, nil)
	case kindFanoutAck:
		n.fan.handleFanoutAck(from, p)
	case kindPublish:
		n.handlePublish(from, p)
	case kindBatch:
		n.handleBatch(from, p, reliable)
	case kindTrace:
		n.bad("trace context outside a batch", from)
	case kindStreamOpen, kindStreamData, kindStreamGrant, kindStreamEOF, kindStreamEnd, kindStreamWant:
		n.streams.handleFrame(from, kind, p, reliable)
	default:
		n.bad(fmt.Sprintf("unknown message kind %#x", kind), from)
	}
}

func (n *Node) handleCommand(from netip.AddrPort, p []byte, reliable bool) {
	if len(p) < 2 {
		n.bad("short command", from)
		return
	}
	if n.strict.drop(from) {
		return
	}
	n.deliverCommand(from, n.names.recvName(from), binary.BigEndian.Uint16(p), p[2:], reliable, nil)
}

// deliverCommand queues a one-way message from peer from (the session
// it came on, or this node) for its handler. Messages from one peer run
// one at a time, in order, off the read goroutine, within the peer's
// inbound bounds (see InboundLimits).
func (n *Node) deliverCommand(from netip.AddrPort, sender string, cmd uint16, payload []byte, reliable bool, tc *trace.SpanContext) {
	h, ok := n.handlers.getCmd(cmd)
	if !ok {
		n.warnOnce("mesh: no handler for command", "cmd", cmd, "from", sender)
		return
	}
	if n.in.submitCommand(from, cmdItem{h: h, cmd: cmd, payload: payload, sender: sender, tc: tc}, reliable) {
		n.metrics.delivered(cmd)
	} else {
		n.metrics.queueDrops.Add(1)
	}
}

type cmdItem struct {
	h       cmdHandler
	cmd     uint16
	payload []byte
	sender  string
	tc      *trace.SpanContext // the sender's trace context, if it sent one
}

// onPeerDown runs when rudp ends a session: calls and fan-out hops waiting
// on the peer fail now, and OnSendFailure listeners hear of lost messages.
func (n *Node) onPeerDown(addr netip.AddrPort, err error) {
	n.mc.HandlePeerDown(addr)
	n.peerDownMembership(addr, err)
	failed := n.calls.failPeer(addr, err)
	failed = n.fan.peerDown(addr, err) || failed
	n.streams.peerDown(addr, err)
	name := n.names.name(addr)
	_, listed := n.mc.View().Node(name)
	n.ps.peerDown(name, listed)
	var pe *rudp.PeerError
	if failed || (errors.As(err, &pe) && pe.Unacked > 0) {
		n.ev.sendFailed(n.names.name(addr), err)
	}
	n.names.forget(addr)
}

// handleBatch unpacks a batch into its messages. A kindTrace entry gives
// its trace context to the entry that follows it (tracing_wire.go).
func (n *Node) handleBatch(from netip.AddrPort, p []byte, reliable bool) {
	var tc *trace.SpanContext
	for len(p) > 0 {
		if len(p) < 5 {
			n.bad("truncated batch", from)
			return
		}
		kind, size := p[0], binary.BigEndian.Uint32(p[1:])
		if uint64(size) > uint64(len(p)-5) || kind == kindBatch {
			n.bad(fmt.Sprintf("bad batch entry (kind %#x, %d bytes)", kind, size), from)
			return
		}
		body := p[5 : 5+size]
		p = p[5+size:]
		switch {
		case kind == kindTrace:
			tc = n.traceEntry(from, body)
			continue
		case tc != nil:
			n.onTraced(from, kind, body, reliable, tc)
		default:
			n.onMessage(from, kind, body, reliable)
		}
		tc = nil
	}
}

// traceEntry reads a kindTrace entry, when tracing is on.
func (n *Node) traceEntry(from netip.AddrPort, p []byte) *trace.SpanContext {
	if n.tracing.get() == nil {
		return nil
	}
	sc, ok, err := parseTraceContext(p)
	if err != nil {
		n.bad("malformed trace context", from)
	}
	if !ok {
		return nil
	}
	return &sc
}

// onTraced is onMessage for a message that came with a trace context.
func (n *Node) onTraced(from netip.AddrPort, kind byte, p []byte, reliable bool, tc *trace.SpanContext) {
	switch kind {
	case kindRequest:
		n.serveRequest(from, p, nil, reliable, nil, tc)
	case kindCommand:
		if len(p) < 2 {
			n.bad("short command", from)
			return
		}
		if n.strict.drop(from) {
			return
		}
		n.deliverCommand(from, n.names.recvName(from), binary.BigEndian.Uint16(p), p[2:], reliable, tc)
	case kindFanout:
		n.fan.handleFanout(from, p, reliable, tc)
	case kindStreamOpen:
		n.streams.handleOpen(from, p, reliable, tc)
	default:
		n.onMessage(from, kind, p, reliable)
	}
}
