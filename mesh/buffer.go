package mesh

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// sendBuffer holds one-way messages per peer for sendInterval and sends
// each peer's batch as one message: reliable messages in one reliable
// batch, unreliable ones in one unreliable batch. RPCs are never held.
type sendBuffer struct {
	tr       *rudp.Transport
	ctx      context.Context                    // the node's: cancelled by Shutdown
	failed   func(to netip.AddrPort, err error) // reports a batch that was not sent (OnSendFailure)
	interval time.Duration
	mu       sync.Mutex
	peers    map[netip.AddrPort]*peerBatch
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

type peerBatch struct {
	rel, unrel []byte // {[kind u8][length u32][body]}
}

// A batch is sent early once it reaches these sizes (an unreliable batch
// above rudp.MaxSize would be split, and lost whole if any part is lost).
const (
	maxReliableBatch   = 256 << 10
	maxUnreliableBatch = rudp.MaxSize
)

func newSendBuffer(tr *rudp.Transport, ctx context.Context, failed func(netip.AddrPort, error), interval time.Duration) *sendBuffer {
	b := &sendBuffer{tr: tr, ctx: ctx, failed: failed, interval: interval,
		peers: make(map[netip.AddrPort]*peerBatch), stop: make(chan struct{})}
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
			b.flushAll()
			return
		case <-t.C:
			b.flushAll()
		}
	}
}

// add appends one message to the peer's batch, sending the batch first if
// the message would overflow it.
func (b *sendBuffer) add(to netip.AddrPort, kind byte, hdr, body []byte, reliable bool) error {
	size := 5 + len(hdr) + len(body)
	limit := maxUnreliableBatch
	if reliable {
		limit = maxReliableBatch
	}
	if size > limit {
		// Too big to share a batch: send it on its own, in order after
		// what is already held.
		if err := b.flushPeer(to); err != nil {
			return err
		}
		if reliable {
			return b.tr.SendMsg(b.ctx, to, kind, hdr, body, rudp.SendOptions{})
		}
		return b.tr.USendWithHeader(to, kind, hdr, body)
	}
	b.mu.Lock()
	p := b.peers[to]
	if p == nil {
		p = &peerBatch{}
		b.peers[to] = p
	}
	buf := &p.unrel
	if reliable {
		buf = &p.rel
	}
	var full []byte
	if len(*buf)+size > limit {
		full, *buf = *buf, nil
	}
	*buf = append(*buf, kind)
	*buf = binary.BigEndian.AppendUint32(*buf, uint32(len(hdr)+len(body)))
	*buf = append(append(*buf, hdr...), body...)
	b.mu.Unlock()
	if full != nil {
		return b.send(to, full, reliable)
	}
	return nil
}

func (b *sendBuffer) send(to netip.AddrPort, batch []byte, reliable bool) error {
	if reliable {
		// A full queue to the peer is waited on until Shutdown.
		return b.tr.SendMsg(b.ctx, to, kindBatch, nil, batch, rudp.SendOptions{})
	}
	return b.tr.USend(to, kindBatch, batch)
}

func (b *sendBuffer) flushPeer(to netip.AddrPort) error {
	b.mu.Lock()
	p := b.peers[to]
	delete(b.peers, to)
	b.mu.Unlock()
	if p == nil {
		return nil
	}
	return b.sendBatches(to, p)
}

func (b *sendBuffer) sendBatches(to netip.AddrPort, p *peerBatch) error {
	var err error
	if len(p.rel) > 0 {
		err = b.send(to, p.rel, true)
	}
	if len(p.unrel) > 0 {
		if e := b.send(to, p.unrel, false); err == nil {
			err = e
		}
	}
	if err != nil {
		b.failed(to, err)
	}
	return err
}

func (b *sendBuffer) flushAll() {
	b.mu.Lock()
	peers := b.peers
	b.peers = make(map[netip.AddrPort]*peerBatch)
	b.mu.Unlock()
	for to, p := range peers {
		b.sendBatches(to, p)
	}
}

// close sends what is held and stops the flusher.
func (b *sendBuffer) close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}
