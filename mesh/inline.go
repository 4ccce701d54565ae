package mesh

import (
	"net/netip"

	"github.com/marsmesh/marsmesh/rudp"
)

// WithInlineHandlers runs RPC and request handlers (HandleRPC,
// HandleRPCWithContext, and the command handlers SendRequest reaches) on
// the goroutine that received the request instead of a new one. That
// goroutine first hands the socket to another (rudp Config.MayBlock) and
// gives up delivering the peer's messages (rudp Config.OnBlocking), so
// the transport keeps reading and the peer's later messages keep arriving
// while the handler runs: a handler may call back the node that called it
// and get its answer. What is saved is the hand-off to a fresh goroutine,
// which in a process that is otherwise idle costs a second OS thread's
// wake-up on the request's path.
//
// Requests from one peer that arrive together run one after another on
// that goroutine: use it for handlers that return quickly. Requests that
// arrive later, and those from other peers, run at once. The node's
// bounds apply as without it (WithInboundLimits, WithMaxHandlers): past
// them a request waits for a worker goroutine as usual. Shutdown waits
// for inline handlers as for the others. Requests a node sends itself are
// not affected. Off by default.
func WithInlineHandlers() Option { return func(o *options) { o.inline = true } }

// inlineConfig sets the transport up for inline handlers: requests are
// taken in order on a goroutine that may block, and their handlers run
// there once it no longer delivers the peer's messages.
func (n *Node) inlineConfig(rc *rudp.Config) {
	rc.MayBlock = func(kind byte) bool { return kind == kindRequest }
	rc.OnBlocking = n.onBlockingInline
}

// onBlockingInline takes a reliable request for WithInlineHandlers (rudp
// Config.OnBlocking): it accounts it in order and returns its handler,
// which the transport runs next on this goroutine, or nil if it queued.
func (n *Node) onBlockingInline(from netip.AddrPort, _ byte, p []byte) func() {
	var run func()
	n.serveRequest(from, p, nil, true, &run, nil)
	return run
}

// submitInline is submit for a reliable request on a goroutine that may
// block: it returns its handler, to run there, when the node's bounds
// allow and nothing from the peer waits ahead of it; otherwise it queues
// as with submit and returns nil.
func (in *inbound) submitInline(addr netip.AddrPort, size int, t task) func() {
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
		return nil
	}
	p.running++
	in.running++
	in.mu.Unlock()
	return func() { in.runInline(p, size, t) }
}

// runInline runs a handler submitInline admitted, then gives back what it
// held.
func (in *inbound) runInline(p *peerIn, size int, t task) {
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
