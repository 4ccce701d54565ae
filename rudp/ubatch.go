package rudp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Small unreliable messages (at most MaxSize bytes) sent to one address in
// quick succession share datagrams, and the datagrams share system calls:
// the first is sent at once, and those that follow within hotWindow are
// packed into batch datagrams,
//
//	[0x04]{[kind][length u16][payload]}
//
// which the flusher goroutine sends together (sendmmsg) with the rest of
// the batch; a sender that fills maxUBatch datagrams sends them itself. A
// batch datagram is at most MaxPacketSize bytes on the wire, or as large
// as the peer reads and the path carries when a session with the peer
// knows (its CAPS, caps.go; loopback: 63 KiB); a batch to a peer with no
// session dials one for that (udatagramLimit). A lost datagram loses the
// messages in it, as separate datagrams would.

const (
	pktDatagramBatch byte = 0x04
	// batchEntryHeader is the kind and length in front of each message.
	batchEntryHeader = 3
	// maxUBatch bounds the datagrams a destination's batch holds before
	// its sender writes them itself.
	maxUBatch = 32
	// udestIdle is how long an address's batching state outlives its last send.
	udestIdle = 10 * time.Second
)

// maxBatchedPayload is the largest unreliable message that goes into a
// batch (a standard datagram holds it with its headers, sealed or not).
const maxBatchedPayload = MaxSize

// udest is the batching state of one destination address.
type udest struct {
	addr     netip.AddrPort
	naddr    net.Addr
	mu       sync.Mutex
	tx       *txBatch // datagrams waiting to be sent, or nil
	cur      []byte   // the batch datagram being filled (tx's open buffer), or nil
	limit    int      // the size of this batch's datagrams (type byte included, before sealing)
	lastSend int64    // transport clock of the last datagram sent directly or flushed
	queued   bool     // listed for the flusher
}

func (t *Transport) udestFor(to netip.AddrPort) *udest {
	t.udMu.RLock()
	d := t.ud[to]
	t.udMu.RUnlock()
	if d != nil {
		return d
	}
	t.udMu.Lock()
	defer t.udMu.Unlock()
	if d = t.ud[to]; d == nil {
		d = &udest{addr: to, naddr: net.UDPAddrFromAddrPort(to), lastSend: -int64(time.Hour)}
		t.ud[to] = d
	}
	return d
}

// udatagramLimit is the size of the unreliable datagrams to addr (type
// byte included, before sealing): larger than the standard one only when
// a session with the peer has its CAPS. A batch to a peer with no session
// dials one (without keys; with keys uwrite always does), so that the
// batches that follow grow once the peer's CAPS arrive; a dial the peer
// never answers ends quietly.
func (t *Transport) udatagramLimit(to netip.AddrPort) int {
	s := t.lookup(to)
	if s == nil && !t.ks.keyed {
		s, _ = t.sessionFor(to, true)
	}
	if s != nil {
		s.mu.Lock()
		peer := s.peerPacket
		s.mu.Unlock()
		if peer > MaxPacketSize {
			return t.sessionMTU(to, peer) + 1 // a KCP packet's size, and its type byte
		}
	}
	return t.maxDatagram
}

// usendSmall sends one message of at most maxBatchedPayload bytes, alone
// or in a batch.
func (t *Transport) usendSmall(to netip.AddrPort, kind byte, size int, parts [][]byte) error {
	d := t.udestFor(to)
	d.mu.Lock()
	now := t.now()
	if d.tx == nil && !d.queued && now-d.lastSend >= int64(hotWindow) {
		d.lastSend = now
		d.mu.Unlock()
		bp := datagramPool.Get().(*[]byte)
		defer datagramPool.Put(bp)
		b := append((*bp)[:0], pktDatagram, kind)
		for _, p := range parts {
			b = append(b, p...)
		}
		return t.uwrite(b, to)
	}
	if d.tx == nil {
		d.tx = txPool.Get().(*txBatch)
		d.limit = t.udatagramLimit(to)
	}
	if d.cur != nil && len(d.cur)+batchEntryHeader+size > d.limit-1 {
		d.tx.Send(d.cur)
		d.cur = nil
	}
	var full *txBatch
	if d.cur == nil && len(d.tx.pkts) >= maxUBatch {
		full = d.tx
		d.tx = txPool.Get().(*txBatch)
	}
	if d.cur == nil {
		d.cur = d.tx.open(pktDatagramBatch, d.limit-1)
	}
	d.cur = append(d.cur, kind)
	d.cur = binary.BigEndian.AppendUint16(d.cur, uint16(size))
	for _, p := range parts {
		d.cur = append(d.cur, p...)
	}
	queue := !d.queued
	d.queued = true
	d.mu.Unlock()
	if queue {
		t.flushMu.Lock()
		t.uflushq = append(t.uflushq, d)
		t.flushMu.Unlock()
		select {
		case t.flushWake <- struct{}{}:
		default:
		}
	}
	if full != nil {
		t.writeUBatch(full, d)
	}
	return nil
}

// flushDatagrams sends the batches the flusher was handed.
func (t *Transport) flushDatagrams(ds []*udest) {
	for _, d := range ds {
		d.mu.Lock()
		b := d.tx
		if d.cur != nil {
			b.Send(d.cur)
		}
		d.tx, d.cur, d.queued = nil, nil, false
		d.lastSend = t.now()
		d.mu.Unlock()
		if b != nil {
			t.writeUBatch(b, d)
		}
	}
}

// writeUBatch sends a batch of unreliable datagrams to d and recycles it:
// in one system call where the socket allows; with keys sealed on the
// peer's session, or, while it is not up, one by one as uwrite holds them.
func (t *Transport) writeUBatch(b *txBatch, d *udest) {
	if !t.ks.keyed {
		t.sendBatch(b, d.addr, d.naddr, nil)
		return
	}
	if s := t.lookup(d.addr); s != nil {
		s.mu.Lock()
		up := s.state == stateEstablished
		s.mu.Unlock()
		if c := s.sec.crypto.Load(); up && c != nil {
			t.sendBatch(b, d.addr, d.naddr, c)
			return
		}
	}
	for _, p := range b.pkts {
		t.uwrite(p, d.addr)
	}
	b.recycle()
}

// expireUdests forgets the batching state of addresses unused for a while.
func (t *Transport) expireUdests(now int64) {
	t.udMu.Lock()
	defer t.udMu.Unlock()
	for a, d := range t.ud {
		d.mu.Lock()
		idle := d.tx == nil && !d.queued && now-d.lastSend > int64(udestIdle)
		d.mu.Unlock()
		if idle {
			delete(t.ud, a)
		}
	}
}

var errBadBatch = errors.New("malformed datagram batch")

// splitBatch calls f for each message of a batch (type byte included). It
// checks the whole batch first, so a malformed one delivers nothing.
func splitBatch(p []byte, f func(kind byte, payload []byte)) error {
	for rest := p[1:]; len(rest) > 0; {
		if len(rest) < batchEntryHeader {
			return errBadBatch
		}
		n := int(binary.BigEndian.Uint16(rest[1:]))
		if len(rest) < batchEntryHeader+n {
			return errBadBatch
		}
		rest = rest[batchEntryHeader+n:]
	}
	for rest := p[1:]; len(rest) > 0; {
		n := int(binary.BigEndian.Uint16(rest[1:]))
		f(rest[0], rest[batchEntryHeader:batchEntryHeader+n])
		rest = rest[batchEntryHeader+n:]
	}
	return nil
}
