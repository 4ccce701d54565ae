package rudp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"
)

// Small unreliable messages sent to one address in quick succession share
// datagrams: the first is sent at once, and those that follow within
// hotWindow are appended to a batch that the flusher goroutine sends as
// one datagram of at most MaxPacketSize bytes:
//
//	[0x04]{[kind][length u16][payload]}
//
// A lost batch loses the messages in it, as separate datagrams would.

const (
	pktDatagramBatch byte = 0x04
	// batchEntryHeader is the kind and length in front of each message.
	batchEntryHeader = 3
	// maxBatchedPayload is the largest unreliable message that goes into a
	// batch: at least two such messages fit in one datagram.
	// (sealed or not).
	maxBatchedPayload = (MaxPacketSize-SealOverhead-1)/2 - batchEntryHeader
	// udestIdle is how long an address's batching state outlives its last send.
	udestIdle = 10 * time.Second
)

// udest is the batching state of one destination address.
type udest struct {
	addr     netip.AddrPort
	mu       sync.Mutex
	buf      []byte // a batch being filled, or nil
	lastSend int64  // transport clock of the last datagram sent directly or flushed
	queued   bool   // listed for the flusher
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
		d = &udest{addr: to, lastSend: -int64(time.Hour)}
		t.ud[to] = d
	}
	return d
}

// usendSmall sends one message of at most maxBatchedPayload bytes, alone
// or in a batch.
func (t *Transport) usendSmall(to netip.AddrPort, kind byte, size int, parts [][]byte) error {
	d := t.udestFor(to)
	d.mu.Lock()
	now := t.now()
	if d.buf == nil && !d.queued && now-d.lastSend >= int64(hotWindow) {
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
	var full []byte
	if len(d.buf)+batchEntryHeader+size > t.maxDatagram {
		full, d.buf = d.buf, nil
	}
	if d.buf == nil {
		d.buf = append(make([]byte, 0, MaxPacketSize), pktDatagramBatch)
	}
	d.buf = append(d.buf, kind)
	d.buf = binary.BigEndian.AppendUint16(d.buf, uint16(size))
	for _, p := range parts {
		d.buf = append(d.buf, p...)
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
		return t.uwrite(full, to)
	}
	return nil
}

// flushDatagrams sends the batches the flusher was handed.
func (t *Transport) flushDatagrams(ds []*udest) {
	for _, d := range ds {
		d.mu.Lock()
		b := d.buf
		d.buf, d.queued = nil, false
		d.lastSend = t.now()
		d.mu.Unlock()
		if b != nil {
			t.uwrite(b, d.addr)
		}
	}
}

// expireUdests forgets the batching state of addresses unused for a while.
func (t *Transport) expireUdests(now int64) {
	t.udMu.Lock()
	defer t.udMu.Unlock()
	for a, d := range t.ud {
		d.mu.Lock()
		idle := d.buf == nil && !d.queued && now-d.lastSend > int64(udestIdle)
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
