package rudp

// gather hands out the concatenation of a list of byte slices in pieces of
// a bounded size. A piece is a subslice of one input where possible and is
// copied into scratch only when it spans two inputs.
type gather struct {
	bufs [][]byte
	head int // bufs[head] is the first slice with bytes left
	n    int // bytes left
}

func (g *gather) reset(bufs [][]byte) {
	g.bufs, g.head, g.n = bufs, 0, 0
	for _, b := range bufs {
		g.n += len(b)
	}
}

// push appends a slice the gather now holds a reference to.
func (g *gather) push(b []byte) {
	if len(b) == 0 {
		return
	}
	if g.head > 64 && g.head*2 > len(g.bufs) {
		n := copy(g.bufs, g.bufs[g.head:])
		clear(g.bufs[n:])
		g.bufs, g.head = g.bufs[:n], 0
	}
	g.bufs = append(g.bufs, b)
	g.n += len(b)
}

// next consumes and returns up to max bytes.
func (g *gather) next(max int, scratch []byte) []byte {
	g.skipEmpty()
	first := g.bufs[g.head]
	if len(first) >= max || g.n == len(first) {
		n := min(max, len(first))
		g.take(n)
		return first[:n]
	}
	out := scratch[:0]
	for len(out) < max && g.n > 0 {
		g.skipEmpty()
		b := g.bufs[g.head]
		n := min(max-len(out), len(b))
		out = append(out, b[:n]...)
		g.take(n)
	}
	return out
}

func (g *gather) take(n int) {
	g.bufs[g.head] = g.bufs[g.head][n:]
	g.n -= n
	if g.n == 0 {
		clear(g.bufs)
		g.bufs, g.head = g.bufs[:0], 0
	}
}

func (g *gather) skipEmpty() {
	for len(g.bufs[g.head]) == 0 {
		g.bufs[g.head] = nil
		g.head++
	}
}

// copyOut returns the remaining bytes as one new slice and empties g.
func (g *gather) copyOut() []byte {
	out := make([]byte, 0, g.n)
	for _, b := range g.bufs[g.head:] {
		out = append(out, b...)
	}
	clear(g.bufs)
	g.bufs, g.head, g.n = g.bufs[:0], 0, 0
	return out
}

// sendQueue holds framed messages waiting for KCP. Small frames are
// appended into a block that is reused once the queue is empty (KCP's Send
// copies what it is handed, so nothing refers to the block then), and
// adjacent frames in the block form one gather entry, so a burst of small
// messages reaches KCP in segment-sized pieces without an allocation or a
// copy per message.
type sendQueue struct {
	gather
	blk  []byte
	open bool // the last gather entry ends at len(blk) and may grow
}

// Block sizes of sendQueue: frames above maxBlockFrame get their own
// allocation; an idle session keeps no block (release).
const (
	minBlock      = 4 << 10
	maxBlock      = 64 << 10
	maxBlockFrame = 16 << 10
)

// push appends a slice the queue now holds a reference to.
func (q *sendQueue) push(b []byte) {
	q.gather.push(b)
	q.open = false
}

// appendFrame frames a message (the concatenation of parts) at the end of
// the queue.
func (q *sendQueue) appendFrame(kind byte, size int, parts [][]byte, ackNow bool) {
	need := frameHeaderSize + size
	if q.n == 0 {
		q.blk, q.open = q.blk[:0], false
	}
	if need > maxBlockFrame {
		q.push(appendFrame(make([]byte, 0, need), kind, size, parts, ackNow))
		return
	}
	if cap(q.blk)-len(q.blk) < need {
		q.blk = make([]byte, 0, min(max(2*cap(q.blk), minBlock), maxBlock))
		q.open = false
	}
	start := len(q.blk)
	q.blk = appendFrame(q.blk, kind, size, parts, ackNow)
	if q.open {
		last := &q.bufs[len(q.bufs)-1]
		*last = (*last)[:len(*last)+need]
		q.n += need
		return
	}
	q.gather.push(q.blk[start:len(q.blk):cap(q.blk)])
	q.open = true
}

// release drops the block of an empty queue (the session went idle).
func (q *sendQueue) release() {
	if q.n == 0 {
		q.blk, q.open = nil, false
	}
}
