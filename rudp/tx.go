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
	nonce [12]byte // sealing scratch
	pkts  [][]byte
	ptrs  []*[]byte // the pool entries behind pkts, returned as they came
	cur   *[]byte   // the buffer KCP fills (Buffer, Send)
	data  bool      // a KCP packet carries data (not only acknowledgements)
	bufs  [][]byte  // one-element Buffers of msgs, reused
	msgs  []ipv4.Message
	raw   rawWriter // sendmmsg scratch (sys_linux.go)
}

var (
	rawPool = sync.Pool{New: func() any { return new(rawWriter) }}
	txPool  = sync.Pool{New: func() any { return new(txBatch) }}
	pktPool = sync.Pool{New: func() any { b := make([]byte, 0, sealHeader+MaxPacketSize+tagSize); return &b }}
)

// add queues one packet, with room in front for the sealing header and
// after it for the tag, so that sealing in place never allocates.
func (b *txBatch) add(typ byte, p []byte) {
	bp := pktPool.Get().(*[]byte)
	if need := sealHeader + 1 + len(p) + tagSize; cap(*bp) < need {
		*bp = make([]byte, 0, need) // a large packet (pathmtu.go); the pool keeps it
	}
	*bp = append(append((*bp)[:sealHeader], typ), p...)
	b.pkts = append(b.pkts, (*bp)[sealHeader:])
	b.ptrs = append(b.ptrs, bp)
}

// Buffer gives KCP room for a packet of up to n bytes (kcp.Packets):
// what open(pktKCP, n) gives.
func (b *txBatch) Buffer(n int) []byte { return b.open(pktKCP, n) }

// open returns room for a packet of type typ of up to n bytes, behind the
// type byte and the room for the sealing header, with room for the tag
// after it: the packet is written where it is sent from. Send takes it.
func (b *txBatch) open(typ byte, n int) []byte {
	bp := pktPool.Get().(*[]byte)
	if need := sealHeader + 1 + n + tagSize; cap(*bp) < need {
		*bp = make([]byte, 0, need) // a large packet (pathmtu.go); the pool keeps it
	}
	*bp = append((*bp)[:sealHeader], typ)
	b.cur = bp
	return (*bp)[sealHeader+1:]
}

// Send takes the packet written into the last open (or Buffer) buffer: p
// is that buffer, filled (kcp.Packets).
func (b *txBatch) Send(p []byte) {
	bp := b.cur
	b.cur = nil
	*bp = (*bp)[:sealHeader+1+len(p)]
	b.pkts = append(b.pkts, (*bp)[sealHeader:])
	b.ptrs = append(b.ptrs, bp)
}

// batchWriter is the recvmmsg/sendmmsg path of a *net.UDPConn: raw system
// calls where sys_linux.go has them, else x/net's for an IPv4 socket.
type batchWriter struct {
	raw *rawSock
	pc  *ipv4.PacketConn
}

func newBatchWriter(c net.PacketConn, local netip.AddrPort) *batchWriter {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	if raw := newRawSock(uc); raw != nil {
		return &batchWriter{raw: raw}
	}
	if !local.Addr().Is4() {
		return nil
	}
	return &batchWriter{pc: ipv4.NewPacketConn(uc)}
}

// writeBatch sends a session's batch and recycles it.
func (t *Transport) writeBatch(b *txBatch, s *session) {
	data := b.data
	if t.sendBatch(b, s.addr, s.naddr, s.sec.crypto.Load()) && data {
		t.primeAcks(s) // readloop.go
	}
}

// sendBatch sends the batch to addr and recycles it; with keys it seals
// each packet in place with c first (and sends nothing without c). It
// reports whether it sent.
func (t *Transport) sendBatch(b *txBatch, addr netip.AddrPort, naddr net.Addr, c *sessCrypto) bool {
	send := !t.ks.keyed || c != nil // a session's packets come after its handshake
	if t.ks.keyed && send {
		for i, bp := range b.ptrs {
			b.pkts[i] = c.seal((*bp)[:sealHeader+len(b.pkts[i])], &b.nonce)
		}
	}
	if send && len(b.pkts) > 0 {
		t.wire(b.pkts, addr, naddr, b)
	}
	b.recycle()
	return send
}

// recycle returns the batch and its packet buffers to their pools.
func (b *txBatch) recycle() {
	for i, bp := range b.ptrs {
		pktPool.Put(bp)
		b.ptrs[i] = nil
		b.pkts[i] = nil
	}
	b.pkts, b.ptrs, b.data, b.cur = b.pkts[:0], b.ptrs[:0], false, nil
	txPool.Put(b)
}

// write sends one datagram.
func (t *Transport) write(b []byte, to netip.AddrPort) error {
	one := [1][]byte{b}
	if t.batch != nil && t.batch.raw != nil {
		w := rawPool.Get().(*rawWriter)
		err := t.rawWire(w, one[:], to)
		rawPool.Put(w)
		return err
	}
	return t.wire(one[:], to, nil, nil)
}

func (t *Transport) rawWire(w *rawWriter, pkts [][]byte, to netip.AddrPort) error {
	res, err := t.batch.raw.write(w, pkts, to)
	t.stats.packetsOut.Add(uint64(res.pkts))
	t.stats.bytesOut.Add(uint64(res.bytes))
	if res.failed > 0 {
		t.stats.writeErrors.Add(uint64(res.failed))
	}
	return err
}

// wire is the one place datagrams leave the transport: every packet to
// every peer goes through it (a layer that seals packets goes here).
// With b (its scratch for sendmmsg, reused across calls) and a
// batch-capable socket, several packets leave in one system call.
func (t *Transport) wire(pkts [][]byte, to netip.AddrPort, naddr net.Addr, b *txBatch) error {
	if t.batch != nil && t.batch.raw != nil && b != nil {
		return t.rawWire(&b.raw, pkts, to)
	}
	var err error
	if len(pkts) > 1 && t.batch != nil && t.batch.pc != nil && b != nil {
		msgs, bufs := &b.msgs, &b.bufs
		*bufs = append((*bufs)[:0], pkts...)
		for i := range pkts {
			*msgs = append(*msgs, ipv4.Message{Buffers: (*bufs)[i : i+1 : i+1], Addr: naddr})
		}
		for ms := *msgs; len(ms) > 0; {
			var n int
			n, err = t.batch.pc.WriteBatch(ms, 0)
			if err != nil {
				t.stats.writeErrors.Add(1)
				break
			}
			t.stats.packetsOut.Add(uint64(n))
			for _, m := range ms[:n] {
				t.stats.bytesOut.Add(uint64(len(m.Buffers[0])))
			}
			ms = ms[n:]
		}
		clear(*msgs)
		*msgs = (*msgs)[:0]
		clear(*bufs)
		*bufs = (*bufs)[:0]
		return err
	}
	for _, p := range pkts {
		if t.fast != nil {
			_, err = t.fast.WriteToUDPAddrPort(p, to)
		} else {
			_, err = t.conn.WriteTo(p, net.UDPAddrFromAddrPort(to))
		}
		if err != nil {
			t.stats.writeErrors.Add(1)
			continue
		}
		t.stats.packetsOut.Add(1)
		t.stats.bytesOut.Add(uint64(len(p)))
	}
	return err
}
