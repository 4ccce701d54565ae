package rudp

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
)

// txBatch collects the packets a KCP flush produces while the session lock
// is held; they are written after the lock is released, so a slow syscall
// never blocks the read loop or other senders on the same session.
type txBatch struct {
	pkts [][]byte
	msgs []ipv4.Message
}

var (
	txPool  = sync.Pool{New: func() any { return new(txBatch) }}
	pktPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxPacketSize); return &b }}
)

func (b *txBatch) add(typ byte, p []byte) {
	bp := pktPool.Get().(*[]byte)
	b.pkts = append(b.pkts, append(append((*bp)[:0], typ), p...))
}

// batchWriter is the sendmmsg path of an IPv4 *net.UDPConn.
type batchWriter struct {
	pc *ipv4.PacketConn
}

func newBatchWriter(c net.PacketConn, local netip.AddrPort) *batchWriter {
	uc, ok := c.(*net.UDPConn)
	if !ok || !local.Addr().Is4() {
		return nil
	}
	return &batchWriter{pc: ipv4.NewPacketConn(uc)}
}

// writeBatch sends the batch to one address and recycles it.
func (t *Transport) writeBatch(b *txBatch, to netip.AddrPort, naddr net.Addr) {
	switch {
	case len(b.pkts) == 1 || (len(b.pkts) > 1 && t.batch == nil):
		for _, p := range b.pkts {
			t.write(p, to)
		}
	case len(b.pkts) > 1:
		for _, p := range b.pkts {
			b.msgs = append(b.msgs, ipv4.Message{Buffers: [][]byte{p}, Addr: naddr})
		}
		for msgs := b.msgs; len(msgs) > 0; {
			n, err := t.batch.pc.WriteBatch(msgs, 0)
			if err != nil {
				t.stats.writeErrors.Add(1)
				break
			}
			t.stats.packetsOut.Add(uint64(n))
			msgs = msgs[n:]
		}
		clear(b.msgs)
		b.msgs = b.msgs[:0]
	}
	for i, p := range b.pkts {
		p = p[:0]
		pktPool.Put(&p)
		b.pkts[i] = nil
	}
	b.pkts = b.pkts[:0]
	txPool.Put(b)
}
