package mesh

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
)

// HandleCommand sets the handler of command ID cmd for Send, USend,
// SendMany, USendMany and SendRequest. It receives the message decoded
// from msgpack into a map; what it returns is the response to a
// SendRequest (ignored for one-way messages). Several handlers may share
// an ID (see the package doc, "Several handlers per ID"); it returns true.
func (n *Node) HandleCommand(cmd uint16, h func(requestData map[string]interface{}) ([]byte, error)) bool {
	return n.handlers.addCmd(cmd, cmdHandler{decoded: h})
}

// SetCommandHandler is HandleCommand for a handler that takes the raw
// payload bytes and the sender's mesh address.
func (n *Node) SetCommandHandler(cmd uint16, h func(payload []byte, senderAddress string) ([]byte, error)) bool {
	return n.handlers.addCmd(cmd, cmdHandler{raw: h})
}

// IsCommandDuplicate reports whether cmd has more than one RPC or command
// handler, both an RPC and a command handler, or a refused stream handler.
func (n *Node) IsCommandDuplicate(cmd uint16) bool { return n.handlers.isDup(cmd) }

// Send sends a reliable one-way message to the command handler of cmd on
// the node at addr ("ip:port"). data is a map, a struct (pointer), a
// *Parcel (all sent as msgpack) or []byte (sent as is, e.g. from
// CreateSendBytes). It returns once the message is queued; a node that
// turns out unreachable is reported to OnSendFailure.
func (n *Node) Send(cmd uint16, addr string, data interface{}) error {
	return n.sendCommand(cmd, addr, data, true)
}

// USend is Send without retransmission: the message arrives whole or not
// at all.
func (n *Node) USend(cmd uint16, addr string, data interface{}) error {
	return n.sendCommand(cmd, addr, data, false)
}

func (n *Node) sendCommand(cmd uint16, addr string, data interface{}, reliable bool) (err error) {
	defer n.metrics.sentDone(cmd, &err)
	payload, err := encodeData(data)
	if err != nil {
		return sendErr(addr, err)
	}
	to, err := resolve(addr)
	if err != nil {
		return sendErr(addr, err)
	}
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], cmd)
	var tc *trace.SpanContext
	if t := n.tracing.get(); t != nil {
		var span trace.Span
		_, span = startSpan(context.Background(), t, nil, trace.SpanKindProducer, "Send", cmd, addr, keyReliable.Bool(reliable))
		defer func() { endSpan(span, err) }()
		tc = carried(span)
	}
	if err := n.transmit(to, kindCommand, hdr[:], payload, reliable, tc); err != nil {
		n.ev.sendFailed(addr, err)
		return sendErr(addr, err)
	}
	return nil
}

// transmit sends one mesh message: to ourselves directly, through the
// send buffer when sendInterval is set (one-way kinds only), else at once.
// tc, if not nil, is the trace context it carries.
func (n *Node) transmit(to netip.AddrPort, kind byte, hdr, body []byte, reliable bool, tc *trace.SpanContext) error {
	if n.life.closed.Load() {
		return ErrClosed
	}
	if len(body) > MaxMessageSize {
		return fmt.Errorf("%d bytes, limit %d: %w", len(body), MaxMessageSize, rudp.ErrTooLarge)
	}
	if to == n.self {
		if tc != nil {
			n.onTraced(to, kind, append(append([]byte(nil), hdr...), body...), reliable, tc)
			return nil
		}
		n.onMessage(to, kind, append(append([]byte(nil), hdr...), body...), reliable)
		return nil
	}
	if n.buffer != nil && kind == kindCommand {
		return n.buffer.add(to, kind, hdr, body, reliable, tc)
	}
	if tc != nil {
		kind, hdr = kindBatch, tracedHeader(tc, kind, hdr, len(body))
	}
	if reliable {
		// A full queue to the peer is waited on until Shutdown.
		return n.tr.SendMsg(n.life.ctx, to, kind, hdr, body, rudp.SendOptions{})
	}
	return n.tr.USendWithHeader(to, kind, hdr, body)
}
