package mesh

import (
	"context"
	"net/netip"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// One-way commands from a peer wait in a queue of fixed-size chunks: the
// read goroutine appends without ever copying what waits (a burst of
// thousands after a resumed session is common), and the drainer takes
// whole chunks, running each chunk's commands without the lock.

const cmdChunkLen = 64

type cmdChunk struct {
	items [cmdChunkLen]cmdItem
	n     int // items filled
	next  *cmdChunk
}

var cmdChunks = sync.Pool{New: func() any { return new(cmdChunk) }}

// cmdQueue is a FIFO of commands (guarded by the node's in.mu).
type cmdQueue struct {
	head, tail *cmdChunk
}

func (q *cmdQueue) empty() bool { return q.head == nil }

func (q *cmdQueue) push(it cmdItem) {
	if q.tail == nil || q.tail.n == cmdChunkLen {
		c := cmdChunks.Get().(*cmdChunk)
		if q.tail == nil {
			q.head = c
		} else {
			q.tail.next = c
		}
		q.tail = c
	}
	q.tail.items[q.tail.n] = it
	q.tail.n++
}

// take removes and returns every chunk queued.
func (q *cmdQueue) take() *cmdChunk {
	c := q.head
	q.head, q.tail = nil, nil
	return c
}

// submitCommand queues a one-way command from addr; commands from one
// peer run one at a time, in order.
func (in *inbound) submitCommand(addr netip.AddrPort, it cmdItem, reliable bool) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	p := in.peerLocked(addr)
	if !in.admitLocked(p, len(it.payload), reliable) {
		in.forgetIdleLocked(p)
		return false
	}
	p.cmds.push(it)
	if p.drain {
		return true
	}
	p.drain = true
	if !in.queueLocked(p, inJob{t: funcTask{do: func() { in.drainCommands(p) }}}) {
		p.drain = false
		freeCmdChunks(p.cmds.take())
		in.releaseLocked(p, len(it.payload), 1)
		return false
	}
	return true
}

// drainCommands runs p's queued commands in order until none is left. It
// takes everything queued at once and gives back what it handled (the
// peer's inbound bounds) after each chunk.
func (in *inbound) drainCommands(p *peerIn) {
	in.mu.Lock()
	for !p.cmds.empty() {
		c := p.cmds.take()
		in.mu.Unlock()
		for c != nil {
			size := 0
			for i := range c.items[:c.n] {
				it := &c.items[i]
				select {
				case <-in.life.done:
				default:
					in.runCommand(it)
				}
				size += len(it.payload)
			}
			count, next := c.n, c.next
			freeCmdChunk(c)
			in.mu.Lock()
			in.releaseLocked(p, size, count)
			in.mu.Unlock()
			c = next
		}
		in.mu.Lock()
	}
	p.drain = false
	in.mu.Unlock()
}

// runCommand runs one command's handler, recovering a panic.
func (in *inbound) runCommand(it *cmdItem) {
	var span trace.Span
	if t := in.b.tracing.get(); t != nil {
		_, span = startSpan(context.Background(), t, it.tc, trace.SpanKindConsumer, "Command", it.cmd, it.sender)
	}
	_, err := in.b.protect(it.cmd, func() ([]byte, error) { return it.h.call(it.payload, it.sender) })
	if err != nil {
		in.b.log.Debug("mesh: command handler failed", "cmd", it.cmd, "from", it.sender, "err", err)
	}
	if span != nil {
		endSpan(span, err)
	}
}

// freeCmdChunk empties one chunk and returns it to the pool.
func freeCmdChunk(c *cmdChunk) {
	clear(c.items[:c.n])
	c.n, c.next = 0, nil
	cmdChunks.Put(c)
}

// freeCmdChunks frees a chain of chunks.
func freeCmdChunks(c *cmdChunk) {
	for c != nil {
		next := c.next
		freeCmdChunk(c)
		c = next
	}
}
