package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
)

// sendBuffer holds one-way messages per peer for sendInterval and sends
// each peer's batch as one message: reliable messages in one reliable
// batch, unreliable ones in one unreliable batch. RPCs are never held.
//
// The flusher never waits on a peer: a reliable batch that finds the
// peer's queue full is kept, in order, for the next round, up to
// maxHeldBytes per peer; past it the oldest kept batches are dropped,
// counted (drops) and reported (failed: OnSendFailure). Each peer has at
// most one sender at a time (the flusher's round, or a caller sending a
// batch that overflowed or a message too big for one), so messages to a
// peer leave in the order they were added.
type sendBuffer struct {
	tr        *rudp.Transport
	ctx       context.Context                    // the node's: cancelled by Shutdown
	failed    func(to netip.AddrPort, err error) // reports messages that were not sent (OnSendFailure)
	interval  time.Duration
	finalWait time.Duration // how long the last flush, at close, waits for full queues

	mu      sync.Mutex
	sending *sync.Cond // signalled when a peer's sender role is free
	peers   map[netip.AddrPort]*peerBatch
	dropped atomic.Uint64 // messages dropped: their peer's queue stayed full
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

type peerBatch struct {
	rel, unrel []byte   // {[kind u8][length u32][body]}
	held       [][]byte // reliable batches the peer's full queue refused, oldest first
	heldBytes  int
	busy       bool // a goroutine is sending this peer's batches
}

func (p *peerBatch) empty() bool { return len(p.rel) == 0 && len(p.unrel) == 0 && len(p.held) == 0 }

// takeReliable returns the reliable batches to send, in order, and
// empties them.
func (p *peerBatch) takeReliable() [][]byte {
	out := p.held
	if len(p.rel) > 0 {
		out = append(out, p.rel)
	}
	p.rel, p.held, p.heldBytes = nil, nil, 0
	return out
}

// A batch is sent early once it reaches these sizes (an unreliable batch
// above rudp.MaxSize would be split, and lost whole if any part is lost).
const (
	maxReliableBatch   = 256 << 10
	maxUnreliableBatch = rudp.MaxSize
)

// maxHeldBytes bounds the reliable batches kept for one peer whose queue
// stays full.
const maxHeldBytes = 4 * maxReliableBatch

func newSendBuffer(tr *rudp.Transport, ctx context.Context, failed func(netip.AddrPort, error), interval, finalWait time.Duration) *sendBuffer {
	b := &sendBuffer{tr: tr, ctx: ctx, failed: failed, interval: interval, finalWait: finalWait,
		peers: make(map[netip.AddrPort]*peerBatch), stop: make(chan struct{})}
	b.sending = sync.NewCond(&b.mu)
	b.wg.Add(1)
	go b.run()
	return b
}

func (b *sendBuffer) run() {
	defer b.wg.Done()
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.flushRound()
			b.flushLast()
			return
		case <-t.C:
			b.flushRound()
		}
	}
}

// add appends one message to the peer's batch. A message too big for a
// batch, or one that overflows the reliable batch, is sent by the caller
// (waiting for room until Shutdown), after what is held for the peer. tc,
// if not nil, is the trace context the message carries: a kindTrace entry
// goes just before it (tracing_wire.go).
func (b *sendBuffer) add(to netip.AddrPort, kind byte, hdr, body []byte, reliable bool, tc *trace.SpanContext) error {
	size := 5 + len(hdr) + len(body)
	var traced []byte // the entries of the message and its trace context, up to body
	if tc != nil {
		traced = tracedHeader(tc, kind, hdr, len(body))
		size = len(traced) + len(body)
	}
	entry := func(buf []byte) []byte {
		if traced != nil {
			return append(append(buf, traced...), body...)
		}
		return appendEntry(buf, kind, hdr, body)
	}
	limit := maxUnreliableBatch
	if reliable {
		limit = maxReliableBatch
	}
	b.mu.Lock()
	if size > limit {
		// Too big to share a batch: send it on its own, in order after
		// what is already held.
		p := b.claimLocked(to)
		rel, unrel := p.takeReliable(), p.unrel
		p.unrel = nil
		b.mu.Unlock()
		err := b.sendWaiting(b.ctx, to, rel, unrel)
		if err != nil {
			b.failed(to, err)
		} else {
			if traced != nil {
				kind, hdr = kindBatch, traced
			}
			if reliable {
				err = b.tr.SendMsg(b.ctx, to, kind, hdr, body, rudp.SendOptions{})
			} else {
				err = b.tr.USendWithHeader(to, kind, hdr, body)
			}
		}
		b.release(p)
		return err
	}
	p := b.peerLocked(to)
	if !reliable {
		var full []byte
		if len(p.unrel)+size > limit {
			full, p.unrel = p.unrel, nil
		}
		p.unrel = entry(p.unrel)
		b.mu.Unlock()
		if full != nil {
			return b.tr.USend(to, kindBatch, full)
		}
		return nil
	}
	if len(p.rel)+size <= limit {
		p.rel = entry(p.rel)
		b.mu.Unlock()
		return nil
	}
	// The batch is full: send it now, after what is held, and start the
	// next one with this message.
	p = b.claimLocked(to)
	rel := p.takeReliable()
	p.rel = entry(nil)
	b.mu.Unlock()
	err := b.sendWaiting(b.ctx, to, rel, nil)
	b.release(p)
	return err
}

func appendEntry(buf []byte, kind byte, hdr, body []byte) []byte {
	buf = append(buf, kind)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(hdr)+len(body)))
	return append(append(buf, hdr...), body...)
}

func (b *sendBuffer) peerLocked(to netip.AddrPort) *peerBatch {
	p := b.peers[to]
	if p == nil {
		p = &peerBatch{}
		b.peers[to] = p
	}
	return p
}

// claimLocked waits until no one sends to the peer and takes the role.
func (b *sendBuffer) claimLocked(to netip.AddrPort) *peerBatch {
	for {
		p := b.peerLocked(to)
		if !p.busy {
			p.busy = true
			return p
		}
		b.sending.Wait()
	}
}

// release gives the peer's sender role back.
func (b *sendBuffer) release(p *peerBatch) {
	b.mu.Lock()
	p.busy = false
	b.sending.Broadcast()
	b.mu.Unlock()
}

// sendWaiting sends batches to a peer, waiting for room in its queue
// until ctx ends (a caller's goroutine, or the last flush). Batches not
// sent because ctx ended count as dropped.
func (b *sendBuffer) sendWaiting(ctx context.Context, to netip.AddrPort, rel [][]byte, unrel []byte) error {
	var err error
	for i, batch := range rel {
		if err = b.tr.SendMsg(ctx, to, kindBatch, nil, batch, rudp.SendOptions{}); err != nil {
			if ctx.Err() != nil {
				b.countDropped(rel[i:])
			}
			break
		}
	}
	if len(unrel) > 0 {
		if e := b.tr.USend(to, kindBatch, unrel); err == nil {
			err = e
		}
	}
	return err
}

// flushJob is one peer's share of a flush round.
type flushJob struct {
	to    netip.AddrPort
	p     *peerBatch
	rel   [][]byte
	unrel []byte
	left  [][]byte // what the peer's full queue refused
	err   error
}

// flushRound sends every peer's batches without waiting: what a full
// queue refuses is kept for the next round (see sendBuffer). Peers with
// a sender already are left to it.
func (b *sendBuffer) flushRound() {
	b.mu.Lock()
	var jobs []flushJob
	for to, p := range b.peers {
		switch {
		case p.busy:
		case p.empty():
			delete(b.peers, to)
		default:
			p.busy = true
			jobs = append(jobs, flushJob{to: to, p: p, rel: p.takeReliable(), unrel: p.unrel})
			p.unrel = nil
		}
	}
	b.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	for i := range jobs {
		j := &jobs[i]
		for k, batch := range j.rel {
			err := b.tr.SendMsg(context.Background(), j.to, kindBatch, nil, batch, rudp.SendOptions{NoWait: true})
			if errors.Is(err, rudp.ErrWouldBlock) {
				j.left = j.rel[k:]
				break
			}
			if err != nil && j.err == nil {
				j.err = err // the session is dead or closing: the batch is lost, as it would be sent
			}
		}
		if len(j.unrel) > 0 {
			if err := b.tr.USend(j.to, kindBatch, j.unrel); err != nil && j.err == nil {
				j.err = err
			}
		}
	}
	var drops []error
	b.mu.Lock()
	for i := range jobs {
		j := &jobs[i]
		j.p.busy = false
		drops = append(drops, b.holdLocked(j.p, j.left))
	}
	b.sending.Broadcast()
	b.mu.Unlock()
	for i, j := range jobs {
		if j.err != nil {
			b.failed(j.to, j.err)
		}
		if drops[i] != nil {
			b.failed(j.to, drops[i])
		}
	}
}

// holdLocked keeps batches a full queue refused ahead of p's new ones,
// merging small ones, and drops the oldest past maxHeldBytes (the error
// says how many messages).
func (b *sendBuffer) holdLocked(p *peerBatch, left [][]byte) error {
	if len(left) == 0 {
		return nil
	}
	held := make([][]byte, 0, len(left)+len(p.held))
	for _, batch := range append(left, p.held...) {
		if k := len(held); k > 0 && len(held[k-1])+len(batch) <= maxReliableBatch {
			held[k-1] = append(held[k-1], batch...)
			continue
		}
		held = append(held, batch)
	}
	p.held, p.heldBytes = held, 0
	for _, batch := range held {
		p.heldBytes += len(batch)
	}
	lost := 0
	for p.heldBytes > maxHeldBytes {
		lost += b.countDropped(p.held[:1])
		p.heldBytes -= len(p.held[0])
		p.held[0] = nil
		p.held = p.held[1:]
	}
	if lost == 0 {
		return nil
	}
	return fmt.Errorf("%w: the queue to the node stayed full; %d buffered messages dropped (more than %d bytes held)",
		rudp.ErrWouldBlock, lost, maxHeldBytes)
}

// countDropped counts the messages in batches as dropped and returns how
// many there were.
func (b *sendBuffer) countDropped(batches [][]byte) int {
	c := 0
	for _, batch := range batches {
		for len(batch) >= 5 {
			c++
			batch = batch[min(5+int(binary.BigEndian.Uint32(batch[1:])), len(batch)):]
		}
	}
	b.dropped.Add(uint64(c))
	return c
}

// flushLast is the flush at close: what the last round could not send
// waits for room, all peers together, for up to finalWait; the rest is
// dropped and reported.
func (b *sendBuffer) flushLast() {
	b.mu.Lock()
	var jobs []flushJob
	for to, p := range b.peers {
		if !p.busy && !p.empty() {
			p.busy = true
			jobs = append(jobs, flushJob{to: to, p: p, rel: p.takeReliable(), unrel: p.unrel})
			p.unrel = nil
		}
	}
	b.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.finalWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.sendWaiting(ctx, j.to, j.rel, j.unrel); err != nil {
				b.failed(j.to, err)
			}
			b.release(j.p)
		}()
	}
	wg.Wait()
}

// close sends what is held and stops the flusher.
func (b *sendBuffer) close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}

// drops counts buffered messages dropped because their peer's queue
// stayed full.
func (b *sendBuffer) drops() uint64 { return b.dropped.Load() }
