package mesh

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// Inbound work (requests, one-way commands, fan-out relays) is bounded per
// peer and per node:
//
//   - per peer, the messages accepted and not yet handled are at most
//     PeerCount messages and PeerBytes bytes. When either is reached the
//     node stops consuming that peer's session (rudp Pause: its KCP window
//     fills and the peer's sender slows down, other peers are untouched),
//     counts a slow-consumer event and logs it once per peer per period;
//     it resumes once the peer is below half of both bounds. Unreliable
//     messages past a bound are dropped.
//   - per node, at most MaxHandlers handlers run at once, and one peer's
//     at most a quarter of them (so a peer whose handlers never return
//     cannot take every slot); the rest wait, per peer in arrival order,
//     peers served in turn.
//
// One-way commands from one peer run one at a time, in order.

// Defaults of InboundLimits, far above what a game server meets in normal use.
const (
	DefaultPeerInboundBytes = 64 << 20
	DefaultPeerInboundCount = 4096
	DefaultMaxHandlers      = 4096
)

// InboundLimits bounds the work a node accepts; zero fields take defaults.
type InboundLimits struct {
	PeerBytes   int // bytes from one peer accepted and not yet handled
	PeerCount   int // messages from one peer accepted and not yet handled
	MaxHandlers int // handlers running at once on the node
}

func (l InboundLimits) withDefaults() InboundLimits {
	if l.PeerBytes <= 0 {
		l.PeerBytes = DefaultPeerInboundBytes
	}
	if l.PeerCount <= 0 {
		l.PeerCount = DefaultPeerInboundCount
	}
	if l.MaxHandlers <= 0 {
		l.MaxHandlers = DefaultMaxHandlers
	}
	return l
}

// WithInboundLimits sets the per-peer bounds of inbound work (and, if
// set, the node's handler concurrency); see InboundLimits.
func WithInboundLimits(l InboundLimits) Option {
	return func(o *options) { o.limits = l }
}

// WithMaxHandlers sets how many handlers run at once on the node
// (default DefaultMaxHandlers).
func WithMaxHandlers(n int) Option {
	return func(o *options) { o.maxHandlers = n }
}

// task is inbound work: run on a worker goroutine, or refuse instead
// when the node stops.
type task interface {
	run()
	refuse()
}

// funcTask is a task made of funcs (refuse may be nil).
type funcTask struct{ do, no func() }

func (f funcTask) run() { f.do() }
func (f funcTask) refuse() {
	if f.no != nil {
		f.no()
	}
}

// inJob is one unit of inbound work.
type inJob struct {
	size  int // bytes accounted to the peer; released when the task ends
	count int // messages accounted (0 for a command drain)
	t     task
}

type peerIn struct {
	addr    netip.AddrPort
	bytes   int
	count   int
	running int
	jobs    []inJob
	head    int
	inReady bool // in inbound.ready
	paused  bool
	cmds    cmdQueue // one-way commands, in order (cmdqueue.go)
	drain   bool     // a drain job is queued or running
}

func (p *peerIn) pending() int { return len(p.jobs) - p.head }

// inbound is a node's inbound work: the per-peer bounds, the queues of
// jobs and one-way commands, the worker goroutines (and the parked ones,
// idleworker.go) that run them, and inline handlers (inline.go). Workers
// are counted in the node's lifecycle, so Shutdown waits for them.
type inbound struct {
	b         *base
	life      *lifecycle
	lim       InboundLimits
	peerMax   int // handlers one peer may run at once
	mu        sync.Mutex
	peers     map[netip.AddrPort]*peerIn
	last      *peerIn      // the last peer looked up (a burst from one skips the map); in peers
	spare     []*peerIn    // idle, for reuse
	ready     []*peerIn    // peers with a job that may start, served in turn
	running   int          // workers
	replying  atomic.Int32 // workers whose handler returned, answering (rpc.go)
	slow      atomic.Uint64
	dropped   atomic.Uint64
	pausedNow atomic.Int64
	serving   servingTable // context-aware handlers running (serve.go)
	workers   idlePool     // parked workers (idleworker.go)
}

func newInbound(b *base, life *lifecycle, l InboundLimits) *inbound {
	in := &inbound{b: b, life: life, lim: l.withDefaults(), peers: make(map[netip.AddrPort]*peerIn)}
	in.peerMax = max(in.lim.MaxHandlers/4, 1)
	return in
}

// answering and answered bracket a worker whose handler returned and that
// only sends its answer now (a new job may then wake a parked worker
// instead of starting a goroutine, idleworker.go).
func (in *inbound) answering() { in.replying.Add(1) }
func (in *inbound) answered()  { in.replying.Add(-1) }

// SlowConsumerEvents counts the times a peer's inbound bound was reached
// and its session paused.
func (n *Node) SlowConsumerEvents() uint64 { return n.in.slow.Load() }

// InboundDrops counts unreliable messages dropped because their peer was
// at its inbound bound.
func (n *Node) InboundDrops() uint64 { return n.in.dropped.Load() }

// admitLocked accounts a message of size bytes from p. It reports false
// (and counts a drop) for an unreliable message past the peer's bounds; a
// reliable one is always taken, and pauses the peer when it reaches them.
func (in *inbound) admitLocked(p *peerIn, size int, reliable bool) bool {
	over := p.bytes+size > in.lim.PeerBytes || p.count+1 > in.lim.PeerCount
	if over && !reliable {
		// A flood drops a message per packet: the warning (rate-limited
		// by time in any case) is asked for on the first drop and every
		// 256th after, not at a log call's cost per drop.
		if n := in.dropped.Add(1); n&255 == 1 {
			in.b.warnOnce("mesh: inbound bound reached, unreliable messages dropped", "from", p.addr, "droppedInAll", n)
		}
		return false
	}
	p.bytes += size
	p.count++
	if !p.paused && (p.bytes >= in.lim.PeerBytes || p.count >= in.lim.PeerCount) && p.addr != in.b.self {
		p.paused = true
		in.pausedNow.Add(1)
		in.slow.Add(1)
		in.b.tr.Pause(p.addr) // never blocks; safe under in.mu
		in.b.warnOnce("mesh: slow consumer: inbound bound reached, session paused "+p.addr.String(),
			"bytes", p.bytes, "count", p.count, "limitBytes", in.lim.PeerBytes, "limitCount", in.lim.PeerCount)
	}
	return true
}

// releaseLocked gives back what a finished message held, resuming the peer
// below its low-water mark and forgetting an idle peer.
func (in *inbound) releaseLocked(p *peerIn, size, count int) {
	p.bytes -= size
	p.count -= count
	if p.paused && p.bytes <= in.lim.PeerBytes/2 && p.count <= in.lim.PeerCount/2 {
		p.paused = false
		in.pausedNow.Add(-1)
		in.b.tr.Resume(p.addr)
	}
	in.forgetIdleLocked(p)
}

// forgetIdleLocked drops the state of a peer with nothing accepted,
// keeping a few for reuse (no allocation per request).
func (in *inbound) forgetIdleLocked(p *peerIn) {
	if p.count == 0 && p.running == 0 && p.pending() == 0 && !p.paused && !p.drain && in.peers[p.addr] == p {
		delete(in.peers, p.addr)
		if in.last == p {
			in.last = nil
		}
		if len(in.spare) < maxSparePeers && cap(p.jobs) <= 64 {
			*p = peerIn{jobs: p.jobs[:0]}
			in.spare = append(in.spare, p)
		}
	}
}

const maxSparePeers = 64

func (in *inbound) peerLocked(addr netip.AddrPort) *peerIn {
	if p := in.last; p != nil && p.addr == addr {
		return p
	}
	p := in.peers[addr]
	if p == nil {
		if k := len(in.spare); k > 0 {
			p = in.spare[k-1]
			in.spare[k-1] = nil
			in.spare = in.spare[:k-1]
		} else {
			p = &peerIn{}
		}
		p.addr = addr
		in.peers[addr] = p
	}
	in.last = p
	return p
}

// submit accounts one message from addr and queues t for a worker. It
// never blocks (it runs on the read goroutine). An unreliable message past
// the peer's bounds is dropped; when the node is stopping, t.refuse runs
// instead of t.run, on this goroutine or a worker.
func (in *inbound) submit(addr netip.AddrPort, size int, reliable bool, t task) {
	in.mu.Lock()
	p := in.peerLocked(addr)
	if !in.admitLocked(p, size, reliable) {
		in.forgetIdleLocked(p)
		in.mu.Unlock()
		return
	}
	ok := in.queueLocked(p, inJob{size: size, count: 1, t: t})
	if !ok {
		in.releaseLocked(p, size, 1)
	}
	in.mu.Unlock()
	if !ok {
		t.refuse()
	}
}

// queueLocked appends a job to p and starts a worker if one may run.
func (in *inbound) queueLocked(p *peerIn, j inJob) bool {
	p.jobs = append(p.jobs, j)
	in.readyLocked(p)
	if in.running < in.lim.MaxHandlers && len(in.ready) > 0 {
		if !in.startWorkerLocked() {
			p.jobs = p.jobs[:len(p.jobs)-1]
			return false
		}
		in.running++
	}
	return true
}

// readyLocked puts p in the ready ring if it has a job it may start.
func (in *inbound) readyLocked(p *peerIn) {
	if !p.inReady && p.pending() > 0 && p.running < in.peerMax {
		p.inReady = true
		in.ready = append(in.ready, p)
	}
}

// worker runs ready jobs, peers in turn, until none is left.
func (in *inbound) worker() {
	in.mu.Lock()
	for len(in.ready) > 0 {
		p := in.ready[0]
		in.ready[0] = nil
		in.ready = in.ready[1:]
		p.inReady = false
		if p.pending() == 0 || p.running >= in.peerMax {
			continue // its job was taken back, or it is at its share
		}
		j := p.jobs[p.head]
		p.jobs[p.head] = inJob{}
		p.head++
		if p.head == len(p.jobs) {
			p.jobs, p.head = p.jobs[:0], 0
		}
		p.running++
		in.readyLocked(p) // behind the others
		in.mu.Unlock()
		select {
		case <-in.life.done:
			j.t.refuse()
		default:
			j.t.run()
		}
		in.mu.Lock()
		p.running--
		in.readyLocked(p)
		in.releaseLocked(p, j.size, j.count)
	}
	in.running--
	in.mu.Unlock()
}
