package mesh

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// maxQueuedCommands bounds the one-way messages from one sender waiting
// for their handler; past it new ones are dropped (and logged).
const maxQueuedCommands = 1 << 16

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
	to, err := n.resolve(addr)
	if err != nil {
		return sendErr(addr, err)
	}
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], cmd)
	if err := n.transmit(to, kindCommand, hdr[:], payload, reliable); err != nil {
		n.sendFailed(addr, err)
		return sendErr(addr, err)
	}
	return nil
}

// transmit sends one mesh message: to ourselves directly, through the
// send buffer when sendInterval is set (one-way kinds only), else at once.
func (n *Node) transmit(to netip.AddrPort, kind byte, hdr, body []byte, reliable bool) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(body) > MaxMessageSize {
		return fmt.Errorf("%d bytes, limit %d: %w", len(body), MaxMessageSize, rudp.ErrTooLarge)
	}
	if to == n.self {
		n.onMessage(to, kind, append(append([]byte(nil), hdr...), body...), reliable)
		return nil
	}
	if n.buffer != nil && kind == kindCommand {
		return n.buffer.add(to, kind, hdr, body, reliable)
	}
	if reliable {
		return n.tr.SendWithHeader(to, kind, hdr, body)
	}
	return n.tr.USendWithHeader(to, kind, hdr, body)
}

// onMessage receives every message of the node's transport (on its read
// goroutine: nothing here blocks).
func (n *Node) onMessage(from netip.AddrPort, kind byte, p []byte, reliable bool) {
	if mars.IsMarsKind(kind) {
		n.mc.HandleMessage(from, kind, p, reliable)
		return
	}
	switch kind {
	case kindCommand:
		n.handleCommand(from, p)
	case kindRequest:
		n.dispatchRequest(from, p, nil)
	case kindResponse:
		n.handleResponse(from, p)
	case kindCancel:
		n.handleCancel(from, p)
	case kindFanout:
		n.handleFanout(from, p, reliable)
	case kindFanoutAck:
		n.handleFanoutAck(from, p)
	case kindBatch:
		n.handleBatch(from, p, reliable)
	case kindStreamOpen, kindStreamData, kindStreamGrant, kindStreamEOF, kindStreamEnd, kindStreamWant:
		n.handleStreamFrame(from, kind, p, reliable)
	default:
		n.bad(fmt.Sprintf("unknown message kind %#x", kind), from)
	}
}

func (n *Node) handleCommand(from netip.AddrPort, p []byte) {
	if len(p) < 2 {
		n.bad("short command", from)
		return
	}
	if n.strictDrop(from) {
		return
	}
	n.deliverCommand(from, n.name(from), binary.BigEndian.Uint16(p), p[2:])
}

// deliverCommand queues a one-way message for its handler. Messages from
// one sender run one at a time, in order, off the read goroutine.
func (n *Node) deliverCommand(key netip.AddrPort, sender string, cmd uint16, payload []byte) {
	h, ok := n.handlers.getCmd(cmd)
	if !ok {
		n.warnOnce("mesh: no handler for command", "cmd", cmd, "from", sender)
		return
	}
	n.queueMu.Lock()
	q := n.queues[key]
	if q == nil {
		q = &cmdQueue{}
		n.queues[key] = q
	}
	if len(q.items) >= maxQueuedCommands {
		n.queueMu.Unlock()
		n.metrics.queueDrops.Add(1)
		n.warnOnce("mesh: command queue full, message dropped", "from", sender)
		return
	}
	q.items = append(q.items, cmdItem{h: h, cmd: cmd, payload: payload, sender: sender})
	n.metrics.delivered(cmd)
	start := !q.running
	q.running = true
	n.queueMu.Unlock()
	if start && !n.startHandler(func() { n.drainQueue(key, q) }) {
		n.queueMu.Lock()
		q.running = false
		q.items = nil
		n.queueMu.Unlock()
	}
}

type cmdQueue struct {
	items   []cmdItem
	spare   []cmdItem // the previous burst's slice, reused for the next
	running bool
}

type cmdItem struct {
	h       cmdHandler
	cmd     uint16
	payload []byte
	sender  string
}

func (n *Node) drainQueue(key netip.AddrPort, q *cmdQueue) {
	for {
		n.queueMu.Lock()
		items := q.items
		q.items, q.spare = q.spare, nil
		if len(items) == 0 {
			q.running = false
			if n.queues[key] == q {
				delete(n.queues, key)
			}
			n.queueMu.Unlock()
			return
		}
		n.queueMu.Unlock()
		for _, it := range items {
			if _, err := n.protect(it.cmd, func() ([]byte, error) { return it.h.call(it.payload, it.sender) }); err != nil {
				n.log.Debug("mesh: command handler failed", "cmd", it.cmd, "from", it.sender, "err", err)
			}
		}
		clear(items)
		n.queueMu.Lock()
		if q.spare == nil && cap(items) <= maxQueuedCommands {
			q.spare = items[:0]
		}
		n.queueMu.Unlock()
	}
}

// startHandler runs f on a goroutine Shutdown waits for; it refuses once
// Shutdown has begun waiting.
func (n *Node) startHandler(f func()) bool {
	n.runMu.RLock()
	defer n.runMu.RUnlock()
	if n.stopping {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// strictDrop reports whether a message from addr must be dropped because
// strictCheckForExternal is on and MARS does not list the sender.
func (n *Node) strictDrop(from netip.AddrPort) bool {
	if !n.cfg.StrictCheckForExternal || from == n.self {
		return false
	}
	if _, ok := n.mc.View().Node(n.name(from)); ok {
		return false
	}
	n.strictDrops.Add(1)
	n.strictMu.Lock()
	first := !n.strictWarned[from]
	if first && len(n.strictWarned) < 4096 {
		n.strictWarned[from] = true
	}
	n.strictMu.Unlock()
	if first {
		n.log.Warn("mesh: dropping messages from a sender MARS does not list", "from", from)
	}
	return true
}

// StrictDrops counts messages dropped by strictCheckForExternal.
func (n *Node) StrictDrops() uint64 { return n.strictDrops.Load() }

func (n *Node) bad(cause string, from netip.AddrPort) {
	n.warnOnce("mesh: dropped malformed message: "+cause, "from", from)
}
