package rudp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// reassembler rebuilds split unreliable messages. It holds at most limit
// bytes and drops any message not completed within ttl. The bytes counted
// for a message are what it costs on the heap (its bookkeeping, its table
// of parts and each part's buffer as allocated), so the limit bounds real
// memory. One source may hold at most limit/4 (or one largest message,
// if that is more): past it, that source's own oldest messages go first,
// so one sender cannot evict everyone else's. Past the global limit the
// oldest message of all goes. Every eviction is O(1): messages sit on
// intrusive lists in arrival order, one global and one per source.
type reassembler struct {
	mu        sync.Mutex
	limit     int
	perSource int
	ttl       int64
	held      int
	m         map[reasmKey]*partial
	srcs      map[netip.AddrPort]*reasmSource
	all       plist // every partial, oldest first
	drops     atomic.Uint64
}

type reasmKey struct {
	from netip.AddrPort
	id   uint32
}

type reasmSource struct {
	held int
	list plist // this source's partials, oldest first
}

type partial struct {
	key   reasmKey
	kind  byte
	got   int
	size  int
	cost  int
	born  int64
	parts [][]byte
	src   *reasmSource

	prev, next       *partial // in reassembler.all
	srcPrev, srcNext *partial // in reasmSource.list
}

// plist is an intrusive doubly linked list of partials; all selects the
// global links or the per-source ones.
type plist struct {
	head, tail *partial
	n          int
}

func (l *plist) push(p *partial, global bool) {
	if global {
		p.prev, p.next = l.tail, nil
		if l.tail != nil {
			l.tail.next = p
		} else {
			l.head = p
		}
	} else {
		p.srcPrev, p.srcNext = l.tail, nil
		if l.tail != nil {
			l.tail.srcNext = p
		} else {
			l.head = p
		}
	}
	l.tail = p
	l.n++
}

func (l *plist) remove(p *partial, global bool) {
	prev, next := p.srcPrev, p.srcNext
	if global {
		prev, next = p.prev, p.next
	}
	if prev != nil {
		if global {
			prev.next = next
		} else {
			prev.srcNext = next
		}
	} else {
		l.head = next
	}
	if next != nil {
		if global {
			next.prev = prev
		} else {
			next.srcPrev = prev
		}
	} else {
		l.tail = prev
	}
	if global {
		p.prev, p.next = nil, nil
	} else {
		p.srcPrev, p.srcNext = nil, nil
	}
	l.n--
}

// Heap costs, in bytes, of the bookkeeping of one message beyond its
// buffers: the partial (about 170 bytes, in a 192-byte size class), its
// map entry (key and pointer, with the map's spare room), its source's
// entry when it is the first, and a slice header per part.
const (
	partialCost   = 192 + 96
	sourceCost    = 64 + 64
	partEntryCost = 24
)

func newReassembler(limit int, ttl time.Duration) *reassembler {
	per := max(limit/4, partialCost+sourceCost+maxFragments*(partEntryCost+MaxSize+MaxSize/8))
	return &reassembler{limit: limit, perSource: min(per, limit), ttl: ttl.Nanoseconds(),
		m: make(map[reasmKey]*partial), srcs: make(map[netip.AddrPort]*reasmSource)}
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
		cost := partialCost + count*partEntryCost
		// The whole message must fit the source's budget.
		if cost+(count-1)*MaxSize > r.perSource {
			r.drops.Add(1)
			return 0, nil, errFragLimit
		}
		src := r.srcs[from]
		if src == nil {
			src = &reasmSource{held: sourceCost}
			r.srcs[from] = src
			r.held += sourceCost
		}
		pt = &partial{key: key, kind: kind, born: now, cost: cost, parts: make([][]byte, count), src: src}
		r.m[key] = pt
		r.all.push(pt, true)
		src.list.push(pt, false)
		src.held += cost
		r.held += cost
	} else if pt.kind != kind || len(pt.parts) != count {
		return 0, nil, errFragMismatch
	}
	if pt.parts[idx] != nil {
		return 0, nil, nil // duplicate part
	}
	b := append([]byte(nil), part...)
	pt.parts[idx] = b
	pt.got++
	pt.size += len(part)
	pt.cost += cap(b)
	pt.src.held += cap(b)
	r.held += cap(b)
	if pt.got == count {
		msg := make([]byte, 0, pt.size)
		for _, b := range pt.parts {
			msg = append(msg, b...)
		}
		r.drop(pt)
		return kind, msg, nil
	}
	r.evictLocked(pt)
	return 0, nil, nil
}

// drop forgets a message and gives back what it cost.
func (r *reassembler) drop(pt *partial) {
	delete(r.m, pt.key)
	r.all.remove(pt, true)
	src := pt.src
	src.list.remove(pt, false)
	src.held -= pt.cost
	r.held -= pt.cost
	if src.list.n == 0 {
		delete(r.srcs, pt.key.from)
		r.held -= sourceCost
	}
	clear(pt.parts)
	pt.parts = nil
}

// evictLocked drops the oldest messages of keep's source while it is over
// its budget, then the oldest of all while the total is over the limit,
// never keep itself.
func (r *reassembler) evictLocked(keep *partial) {
	src := keep.src
	for src.held > r.perSource {
		victim := src.list.head
		if victim == keep {
			victim = keep.srcNext
		}
		if victim == nil {
			break
		}
		r.drop(victim)
		r.drops.Add(1)
	}
	for r.held > r.limit {
		victim := r.all.head
		if victim == keep {
			victim = keep.next
		}
		if victim == nil {
			break
		}
		r.drop(victim)
		r.drops.Add(1)
	}
}

func (r *reassembler) expire(now int64) {
	r.mu.Lock()
	r.expireLocked(now)
	r.mu.Unlock()
}

// expireLocked drops messages older than the TTL.
func (r *reassembler) expireLocked(now int64) {
	for pt := r.all.head; pt != nil && now-pt.born > r.ttl; pt = r.all.head {
		r.drop(pt)
		r.drops.Add(1)
	}
}

// pending reports the incomplete messages and bytes held.
func (r *reassembler) pending() (msgs, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m), r.held
}
