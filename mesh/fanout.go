package mesh

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Fan-out (SendMany, USendMany) sends one message to many nodes along a
// tree: the sender reaches at most limit nodes, each relays to its share of
// the rest, so N nodes are reached in about log_limit(N) hops.
//
// Reliable fan-out is acknowledged hop by hop: a relay answers its parent
// once its whole share is done, listing the nodes it could not reach; a
// leaf is confirmed by the transport's acknowledgement of the message. When
// a relay is unreachable (its session dies, or the hop's deadline passes),
// its parent takes over the relay's share. Every message carries a random
// ID and receivers drop IDs they have seen, so a share that is sent twice
// is still delivered once.
//
// Frame (kindFanout): [id u64][cmd u16][flags u8][limit u16][deadline ms u32]
// [origin addr][count u16]{addr}[payload]; acks (kindFanoutAck):
// [id u64][count u16]{addr}.

const (
	fanReliable byte = 1 << 0

	// fanoutTimeout bounds a whole reliable SendMany.
	fanoutTimeout = 10 * time.Second
	// seenTTL is how long a fan-out ID is remembered for de-duplication.
	seenTTL = time.Minute
)

// FanoutError lists the nodes a SendMany could not reach.
type FanoutError struct {
	Failed []string
	Total  int
}

func (e *FanoutError) Error() string {
	return fmt.Sprintf("mesh: fan-out reached %d of %d nodes; failed: %s",
		e.Total-len(e.Failed), e.Total, strings.Join(e.Failed, ", "))
}

// Unwrap makes IsSendError true.
func (e *FanoutError) Unwrap() error { return ErrSend }

type fanKey struct {
	id   uint64
	peer netip.AddrPort
}

type fanAck struct {
	failed []netip.AddrPort
	err    error
}

type fanoutState struct {
	mu        sync.Mutex
	waits     map[fanKey]chan fanAck
	seen      map[uint64]int64 // id -> unix ns when it may be forgotten
	lastPrune int64
}

func (f *fanoutState) init() {
	f.waits = make(map[fanKey]chan fanAck)
	f.seen = make(map[uint64]int64)
}

// firstSight records id and reports whether it is new.
func (f *fanoutState) firstSight(id uint64) bool {
	now := time.Now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	if now-f.lastPrune > int64(time.Second) {
		f.lastPrune = now
		for k, exp := range f.seen {
			if exp < now {
				delete(f.seen, k)
			}
		}
	}
	if _, ok := f.seen[id]; ok {
		return false
	}
	f.seen[id] = now + int64(seenTTL)
	return true
}

func (f *fanoutState) wait(k fanKey) chan fanAck {
	ch := make(chan fanAck, 1)
	f.mu.Lock()
	f.waits[k] = ch
	f.mu.Unlock()
	return ch
}

func (f *fanoutState) deliver(k fanKey, a fanAck) bool {
	f.mu.Lock()
	ch := f.waits[k]
	delete(f.waits, k)
	f.mu.Unlock()
	if ch != nil {
		ch <- a
	}
	return ch != nil
}

// peerDown fails every hop waiting on addr.
func (f *fanoutState) peerDown(addr netip.AddrPort, err error) bool {
	f.mu.Lock()
	var chs []chan fanAck
	for k, ch := range f.waits {
		if k.peer == addr {
			chs = append(chs, ch)
			delete(f.waits, k)
		}
	}
	f.mu.Unlock()
	for _, ch := range chs {
		ch <- fanAck{err: err}
	}
	return len(chs) > 0
}

func (f *fanoutState) closeAll() {
	f.mu.Lock()
	waits := f.waits
	f.waits = make(map[fanKey]chan fanAck)
	f.mu.Unlock()
	for _, ch := range waits {
		ch <- fanAck{err: ErrClosed}
	}
}

// fanMsg is one fan-out message as a hop sees it.
type fanMsg struct {
	id       uint64
	cmd      uint16
	flags    byte
	limit    int
	deadline time.Time // zero for unreliable fan-out
	origin   netip.AddrPort
	payload  []byte
}

// SendMany sends a reliable message to the command handler of cmd on every
// node in addrs, along a tree in which each node sends to at most limit
// others (limit <= 0: the sender sends to all). It returns once every node
// has it or is known unreachable; a *FanoutError (IsSendError) lists the
// nodes that were not reached. Each node gets the message exactly once.
func (n *Node) SendMany(cmd uint16, addrs []string, data interface{}, limit int) error {
	return n.sendMany(cmd, addrs, data, limit, true)
}

// USendMany is SendMany with unreliable messages and no acknowledgements:
// it returns once the first hop is sent.
func (n *Node) USendMany(cmd uint16, addrs []string, data interface{}, limit int) error {
	return n.sendMany(cmd, addrs, data, limit, false)
}

func (n *Node) sendMany(cmd uint16, addrs []string, data interface{}, limit int, reliable bool) error {
	if n.closed.Load() {
		return sendErr("fan-out", ErrClosed)
	}
	payload, err := encodeData(data)
	if err != nil {
		return sendErr("fan-out", err)
	}
	if len(payload) > MaxMessageSize {
		return sendErr("fan-out", fmt.Errorf("%d bytes, limit %d", len(payload), MaxMessageSize))
	}
	var failed []string
	seen := make(map[netip.AddrPort]bool, len(addrs))
	targets := make([]netip.AddrPort, 0, len(addrs))
	toSelf := false
	for _, a := range addrs {
		ap, err := n.resolve(a)
		if err != nil {
			failed = append(failed, a)
			continue
		}
		if seen[ap] {
			continue
		}
		seen[ap] = true
		if ap == n.self {
			toSelf = true
			continue
		}
		targets = append(targets, ap)
	}
	if limit <= 0 || limit > len(targets) {
		limit = max(len(targets), 1)
	}
	n.metrics.fanoutSends.Add(1)
	m := &fanMsg{id: rand.Uint64(), cmd: cmd, limit: limit, origin: n.self, payload: payload}
	if reliable {
		m.flags = fanReliable
		m.deadline = time.Now().Add(fanoutTimeout)
	}
	n.fan.firstSight(m.id)
	if toSelf {
		n.deliverCommand(n.self, n.selfStr, cmd, payload)
	}
	for _, ap := range n.spread(m, targets) {
		failed = append(failed, n.name(ap))
	}
	if len(failed) > 0 {
		return &FanoutError{Failed: failed, Total: len(seen) + len(failed) - countResolved(failed, seen)}
	}
	return nil
}

// countResolved counts the failed addresses that were resolved (and so
// already counted in seen).
func countResolved(failed []string, seen map[netip.AddrPort]bool) int {
	c := 0
	for _, f := range failed {
		if ap, err := netip.ParseAddrPort(f); err == nil && seen[ap] {
			c++
		}
	}
	return c
}

// spread delivers m to targets through at most m.limit relays and returns
// the nodes that could not be reached.
func (n *Node) spread(m *fanMsg, targets []netip.AddrPort) []netip.AddrPort {
	if len(targets) == 0 {
		return nil
	}
	groups := split(targets, m.limit)
	if m.flags&fanReliable == 0 {
		var failed []netip.AddrPort
		for _, g := range groups {
			if err := n.sendHop(m, g[0], g[1:], nil); err != nil {
				failed = append(failed, g[0])
			}
		}
		return failed
	}
	results := make([][]netip.AddrPort, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = n.relay(m, g[0], g[1:])
		}()
	}
	wg.Wait()
	var failed []netip.AddrPort
	for _, r := range results {
		failed = append(failed, r...)
	}
	return failed
}

// relay hands head its share (rest) and waits until head confirms: a hop
// with a share is confirmed by a fan-out ack (sent once the share is
// done), a hop without one by the transport's acknowledgement of the
// message. If head cannot be reached, this node delivers head's share
// itself.
func (n *Node) relay(m *fanMsg, head netip.AddrPort, rest []netip.AddrPort) []netip.AddrPort {
	k := fanKey{m.id, head}
	ch := n.fan.wait(k)
	var err error
	if len(rest) == 0 {
		err = n.sendHop(m, head, nil, func(err error) { n.fan.deliver(k, fanAck{err: err}) })
	} else {
		err = n.sendHop(m, head, rest, nil)
	}
	if err == nil {
		// Leave the child time to report its own share before our deadline.
		hop := time.Until(m.deadline) * 9 / 10
		timer := time.NewTimer(max(hop, 0))
		select {
		case a := <-ch:
			timer.Stop()
			if a.err == nil {
				return a.failed
			}
			err = a.err
		case <-timer.C:
			n.fan.deliver(k, fanAck{}) // forget the wait
			err = fmt.Errorf("no fan-out ack from %s in time", head)
		}
	} else {
		n.fan.deliver(k, fanAck{})
	}
	n.metrics.relayTakeovers.Add(1)
	n.sendFailed(n.name(head), err)
	return append([]netip.AddrPort{head}, n.spread(m, rest)...)
}

// sendHop sends m to head with rest as its share; done, if set, hears the
// transport's acknowledgement (reliable fan-out only).
func (n *Node) sendHop(m *fanMsg, head netip.AddrPort, rest []netip.AddrPort, done func(error)) error {
	if len(rest) > math.MaxUint16 {
		return fmt.Errorf("fan-out share of %d nodes is too large", len(rest))
	}
	hdr := fanoutHeader(m, rest)
	if n.closed.Load() {
		return ErrClosed
	}
	switch {
	case m.flags&fanReliable == 0:
		return n.tr.USendWithHeader(head, kindFanout, hdr, m.payload)
	case done != nil:
		return n.tr.SendTracked(head, kindFanout, hdr, m.payload, done)
	default:
		// A relay: its ack would otherwise wait for data that never comes.
		return n.tr.SendAckNow(head, kindFanout, hdr, m.payload)
	}
}

// fanoutHeader encodes the frame of m, with share, up to the payload.
func fanoutHeader(m *fanMsg, share []netip.AddrPort) []byte {
	hdr := make([]byte, 0, 24+8*(len(share)+1))
	hdr = binary.BigEndian.AppendUint64(hdr, m.id)
	hdr = binary.BigEndian.AppendUint16(hdr, m.cmd)
	hdr = append(hdr, m.flags)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(min(m.limit, math.MaxUint16)))
	var ms uint32
	if !m.deadline.IsZero() {
		ms = uint32(min(max(time.Until(m.deadline).Milliseconds(), 1), math.MaxUint32))
	}
	hdr = binary.BigEndian.AppendUint32(hdr, ms)
	hdr = appendAddr(hdr, m.origin)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(share)))
	for _, a := range share {
		hdr = appendAddr(hdr, a)
	}
	return hdr
}

// split cuts targets into at most k contiguous groups of near-equal size.
func split(targets []netip.AddrPort, k int) [][]netip.AddrPort {
	k = min(max(k, 1), len(targets))
	groups := make([][]netip.AddrPort, 0, k)
	size, extra := len(targets)/k, len(targets)%k
	for i := 0; i < k; i++ {
		n := size
		if i < extra {
			n++
		}
		groups = append(groups, targets[:n])
		targets = targets[n:]
	}
	return groups
}

func parseFanout(p []byte) (*fanMsg, []netip.AddrPort, error) {
	if len(p) < 17 {
		return nil, nil, errMalformed
	}
	m := &fanMsg{
		id:    binary.BigEndian.Uint64(p),
		cmd:   binary.BigEndian.Uint16(p[8:]),
		flags: p[10],
		limit: int(binary.BigEndian.Uint16(p[11:])),
	}
	if ms := binary.BigEndian.Uint32(p[13:]); ms > 0 {
		m.deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
	}
	var err error
	if m.origin, p, err = readAddr(p[17:]); err != nil {
		return nil, nil, err
	}
	if len(p) < 2 {
		return nil, nil, errMalformed
	}
	count := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if count > len(p)/2 {
		return nil, nil, errMalformed
	}
	share := make([]netip.AddrPort, 0, count)
	for range count {
		var a netip.AddrPort
		if a, p, err = readAddr(p); err != nil {
			return nil, nil, err
		}
		share = append(share, a)
	}
	if m.limit < 1 {
		m.limit = 1
	}
	m.payload = p
	return m, share, nil
}

// handleFanout delivers a fan-out message here (once per ID) and relays
// it to this node's share.
func (n *Node) handleFanout(from netip.AddrPort, p []byte, reliable bool) {
	m, share, err := parseFanout(p)
	if err != nil {
		n.bad("malformed fan-out", from)
		return
	}
	if n.strictDrop(from) {
		return
	}
	if n.fan.firstSight(m.id) {
		n.metrics.fanoutDelivered.Add(1)
		n.deliverCommand(m.origin, n.name(m.origin), m.cmd, m.payload)
	}
	if m.flags&fanReliable == 0 || !reliable {
		m.flags &^= fanReliable
		n.spread(m, share)
		return
	}
	if len(share) == 0 {
		return // a leaf: the transport's acknowledgement is the parent's confirmation
	}
	ok := n.startHandler(func() {
		failed := n.spread(m, share)
		n.sendFanAck(from, m.id, failed)
	})
	if !ok {
		n.sendFanAck(from, m.id, share)
	}
}

func (n *Node) sendFanAck(to netip.AddrPort, id uint64, failed []netip.AddrPort) {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 10+8*len(failed)), id)
	b = binary.BigEndian.AppendUint16(b, uint16(min(len(failed), math.MaxUint16)))
	for _, a := range failed[:min(len(failed), math.MaxUint16)] {
		b = appendAddr(b, a)
	}
	if err := n.tr.SendAckNow(to, kindFanoutAck, nil, b); err != nil {
		n.log.Debug("mesh: fan-out ack not sent", "to", to, "err", err)
	}
}

func (n *Node) handleFanoutAck(from netip.AddrPort, p []byte) {
	id, failed, err := parseFanoutAck(p)
	if err != nil {
		n.bad("malformed fan-out ack", from)
		return
	}
	n.fan.deliver(fanKey{id, from}, fanAck{failed: failed})
}

func parseFanoutAck(p []byte) (uint64, []netip.AddrPort, error) {
	if len(p) < 10 {
		return 0, nil, errMalformed
	}
	id := binary.BigEndian.Uint64(p)
	count := int(binary.BigEndian.Uint16(p[8:]))
	p = p[10:]
	if count > len(p)/2 {
		return 0, nil, errMalformed
	}
	failed := make([]netip.AddrPort, 0, count)
	for range count {
		var a netip.AddrPort
		var err error
		if a, p, err = readAddr(p); err != nil {
			return 0, nil, err
		}
		failed = append(failed, a)
	}
	return id, failed, nil
}
