package rudp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

var datagramPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxPacketSize); return &b }}

// USend sends one unreliable message (the concatenation of parts, at most
// MaxMessageSize bytes): never retransmitted, no session needed. Above
// MaxSize bytes it is split into parts that the receiver reassembles; if
// any part is lost the whole message is dropped.
func (t *Transport) USend(to netip.AddrPort, kind byte, parts ...[]byte) error {
	size, err := messageSize(parts)
	if err != nil {
		return err
	}
	return t.usend(to, kind, size, parts)
}

// USendWithHeader is USend for an upper layer's header (at most
// MaxHeaderSize bytes) and a body of at most MaxMessageSize bytes.
func (t *Transport) USendWithHeader(to netip.AddrPort, kind byte, header, body []byte) error {
	if err := checkHeaderBody(header, body); err != nil {
		return err
	}
	return t.usend(to, kind, len(header)+len(body), [][]byte{header, body})
}

func (t *Transport) usend(to netip.AddrPort, kind byte, size int, parts [][]byte) error {
	if t.closing.Load() {
		return ErrClosed
	}
	if err := checkAddr(to); err != nil {
		return err
	}
	if size <= maxBatchedPayload {
		return t.usendSmall(to, kind, size, parts)
	}
	bp := datagramPool.Get().(*[]byte)
	defer datagramPool.Put(bp)
	if size <= MaxSize {
		b := append((*bp)[:0], pktDatagram, kind)
		for _, p := range parts {
			b = append(b, p...)
		}
		return t.write(b, to)
	}
	count := (size + MaxSize - 1) / MaxSize
	id := t.fragID.Add(1)
	t.stats.splits.Add(1)
	cur := append([][]byte(nil), parts...)
	for i := 0; i < count; i++ {
		b := append((*bp)[:0], pktFragment, kind)
		b = binary.BigEndian.AppendUint32(b, id)
		b = binary.BigEndian.AppendUint16(b, uint16(i))
		b = binary.BigEndian.AppendUint16(b, uint16(count))
		want := MaxSize
		for want > 0 && len(cur) > 0 {
			n := min(want, len(cur[0]))
			b = append(b, cur[0][:n]...)
			want -= n
			if cur[0] = cur[0][n:]; len(cur[0]) == 0 {
				cur = cur[1:]
			}
		}
		if err := t.write(b, to); err != nil {
			return err
		}
	}
	return nil
}

// reassembler rebuilds split unreliable messages. It holds at most limit
// bytes (parts plus bookkeeping), evicting the oldest incomplete messages,
// and drops any message not completed within ttl.
type reassembler struct {
	mu    sync.Mutex
	limit int
	ttl   int64
	held  int
	m     map[reasmKey]*partial
	order []reasmEntry  // creation order, for eviction and expiry
	drops atomic.Uint64 // incomplete messages dropped
}

type reasmKey struct {
	from netip.AddrPort
	id   uint32
}

type reasmEntry struct {
	key  reasmKey
	born int64
}

type partial struct {
	kind  byte
	got   int
	size  int
	cost  int
	born  int64
	parts [][]byte
}

func newReassembler(limit int, ttl time.Duration) *reassembler {
	return &reassembler{limit: limit, ttl: ttl.Nanoseconds(), m: make(map[reasmKey]*partial)}
}

var (
	errFragShort    = errors.New("short fragment")
	errFragCount    = errors.New("fragment count out of range")
	errFragSize     = errors.New("fragment size does not match its index")
	errFragMismatch = errors.New("fragment disagrees with earlier parts")
	errFragLimit    = errors.New("fragmented message larger than the reassembly limit")
)

// add takes one fragment packet (type byte included). When it completes a
// message, add returns its kind and bytes.
func (r *reassembler) add(from netip.AddrPort, p []byte, now int64) (byte, []byte, error) {
	if len(p) < fragmentHeaderSize {
		return 0, nil, errFragShort
	}
	kind := p[1]
	key := reasmKey{from, binary.BigEndian.Uint32(p[2:])}
	idx := int(binary.BigEndian.Uint16(p[6:]))
	count := int(binary.BigEndian.Uint16(p[8:]))
	part := p[fragmentHeaderSize:]
	if count < 2 || count > maxFragments || idx >= count {
		return 0, nil, errFragCount
	}
	if (idx < count-1 && len(part) != MaxSize) || len(part) == 0 || len(part) > MaxSize {
		return 0, nil, errFragSize
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	pt := r.m[key]
	if pt == nil {
		cost := count * 24 // the parts table
		if cost+len(part) > r.limit {
			r.drops.Add(1)
			return 0, nil, errFragLimit
		}
		pt = &partial{kind: kind, born: now, cost: cost, parts: make([][]byte, count)}
		r.m[key] = pt
		r.order = append(r.order, reasmEntry{key, now})
		r.held += cost
	} else if pt.kind != kind || len(pt.parts) != count {
		return 0, nil, errFragMismatch
	}
	if pt.parts[idx] != nil {
		return 0, nil, nil // duplicate part
	}
	pt.parts[idx] = append([]byte(nil), part...)
	pt.got++
	pt.size += len(part)
	pt.cost += len(part)
	r.held += len(part)
	if pt.got == count {
		msg := make([]byte, 0, pt.size)
		for _, b := range pt.parts {
			msg = append(msg, b...)
		}
		r.drop(key, pt)
		return kind, msg, nil
	}
	r.evictLocked(key)
	return 0, nil, nil
}

func (r *reassembler) drop(key reasmKey, pt *partial) {
	delete(r.m, key)
	r.held -= pt.cost
}

// evictLocked drops the oldest incomplete messages (never keep) until the
// held bytes fit the limit, and compacts the order list on the way.
func (r *reassembler) evictLocked(keep reasmKey) {
	if r.held <= r.limit {
		return
	}
	out := r.order[:0]
	for _, e := range r.order {
		pt := r.m[e.key]
		if pt == nil || pt.born != e.born {
			continue
		}
		if r.held > r.limit && e.key != keep {
			r.drop(e.key, pt)
			r.drops.Add(1)
			continue
		}
		out = append(out, e)
	}
	clear(r.order[len(out):])
	r.order = out
}

func (r *reassembler) expire(now int64) {
	r.mu.Lock()
	r.expireLocked(now)
	r.mu.Unlock()
}

// expireLocked drops messages older than the TTL and forgets finished ones.
func (r *reassembler) expireLocked(now int64) {
	n := 0
	for _, e := range r.order {
		pt := r.m[e.key]
		if pt == nil || pt.born != e.born {
			n++
			continue
		}
		if now-e.born <= r.ttl {
			break
		}
		r.drop(e.key, pt)
		r.drops.Add(1)
		n++
	}
	if n > 0 {
		r.order = append(r.order[:0], r.order[n:]...)
	}
}

// pending reports the incomplete messages and bytes held (for tests).
func (r *reassembler) pending() (msgs, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m), r.held
}
