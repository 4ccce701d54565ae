package mesh

import (
	"net/netip"

	"github.com/marsmesh/marsmesh/rudp"
)

// WithInlineHandlers runs RPC and request handlers (HandleRPC,
// HandleRPCWithContext, and the command handlers SendRequest reaches) on
// the goroutine that received the request instead of a new one. That
// goroutine first hands the socket to another (rudp Config.MayBlock), so
// the transport keeps reading while the handler runs; what is saved is the
// hand-off to a fresh goroutine, which in a process that is otherwise idle
// costs a second OS thread's wake-up on the request's path.
//
// Requests from one peer then run one after another, each waiting for the
// handler before it: use it for handlers that return quickly. Requests
// from different peers still run at once. The node's bounds apply as
// without it (WithInboundLimits, WithMaxHandlers): past them a request
// waits for a worker goroutine as usual. Shutdown waits for inline
// handlers as for the others. Requests a node sends itself are not
// affected. Off by default.
func WithInlineHandlers() Option { return func(o *options) { o.inline = true } }

// inlineConfig sets the transport up for inline handlers: requests are
// delivered on a goroutine that may block.
func (n *Node) inlineConfig(rc *rudp.Config) {
	rc.MayBlock = func(kind byte) bool { return kind == kindRequest }
	rc.OnMessage = n.onMessageInline
}

// onMessageInline is onMessage for WithInlineHandlers: a reliable request
// arrives on a goroutine that may block (rudp Config.MayBlock).
func (n *Node) onMessageInline(from netip.AddrPort, kind byte, p []byte, reliable bool) {
	if kind == kindRequest && reliable {
		n.serveRequest(from, p, nil, true, true)
		return
	}
	n.onMessage(from, kind, p, reliable)
}

// submitInline is submit for a reliable request on a goroutine that may
// block: its handler runs here when the node's bounds allow and nothing
// from the peer waits ahead of it; otherwise it queues as with submit.
func (in *inbound) submitInline(addr netip.AddrPort, size int, t task) {
	in.mu.Lock()
	p := in.peerLocked(addr)
	in.admitLocked(p, size, true) // reliable: always taken
	if p.pending() > 0 || p.running >= in.peerMax || in.running >= in.lim.MaxHandlers || !in.life.enter() {
		ok := in.queueLocked(p, inJob{size: size, count: 1, t: t})
		if !ok {
			in.releaseLocked(p, size, 1)
		}
		in.mu.Unlock()
		if !ok {
			t.refuse()
		}
		return
	}
	p.running++
	in.running++
	in.mu.Unlock()
	select {
	case <-in.life.done:
		t.refuse()
	default:
		t.run()
	}
	in.life.exit()
	in.mu.Lock()
	p.running--
	in.running--
	in.readyLocked(p)
	in.releaseLocked(p, size, 1)
	if len(in.ready) > 0 && in.running < in.lim.MaxHandlers && in.life.start(in.worker) {
		in.running++ // work queued meanwhile gets a worker
	}
	in.mu.Unlock()
}
