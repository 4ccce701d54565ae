package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
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
// [id u64][count u16]{failed addr}[count u16]{refused addr}. The deadline
// is the time left (capped at fanoutTimeout by the receiver).

const (
	fanReliable byte = 1 << 0

	// fanoutTimeout bounds a whole reliable SendMany.
	fanoutTimeout = 10 * time.Second
	// seenTTL is how long a fan-out ID is remembered for de-duplication
	// (at least; see fanoutState).
	seenTTL = time.Minute
	// maxSeen bounds each generation of remembered fan-out IDs.
	maxSeen = 1 << 16
	// maxFanoutShare bounds the share list of one fan-out frame: a larger
	// share is split over more relays by the sender, and a frame listing
	// more is refused as malformed.
	maxFanoutShare = 16384
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

// fanMsg is one fan-out message as a hop sees it.
type fanMsg struct {
	id       uint64
	cmd      uint16
	flags    byte
	limit    int
	deadline time.Time // zero for unreliable fan-out
	origin   netip.AddrPort
	payload  []byte
	tc       *trace.SpanContext // the trace context hops carry, when tracing is on
}

// fanout sends SendMany and USendMany messages along their tree and relays
// those of other nodes: it owns the hop bookkeeping (fanoutState) and uses
// the node's transport, sender, inbound work (relays run as inbound jobs)
// and MARS view (only listed nodes are relayed to).
type fanout struct {
	fanoutState // IDs seen, hops waiting for their acks (fanout_state.go)

	b           *base
	life        *lifecycle
	names       *peerNames
	send        *sender
	in          *inbound
	strict      *strictCheck
	metrics     *meshMetrics
	view        func() *mars.View                                                                                          // the node's MARS view
	deliverHere func(from netip.AddrPort, sender string, cmd uint16, payload []byte, reliable bool, tc *trace.SpanContext) // to this node's command handlers
	failed      func(addr string, err error)                                                                               // OnSendFailure
}

// SendMany sends a reliable message to the command handler of cmd on every
// node in addrs, along a tree in which each node sends to at most limit
// others (limit <= 0: the sender sends to all). It returns once every node
// has it or is known unreachable; a *FanoutError (IsSendError) lists the
// nodes that were not reached. Each node gets the message exactly once.
func (n *Node) SendMany(cmd uint16, addrs []string, data interface{}, limit int) error {
	return n.fan.sendMany(cmd, addrs, data, limit, true)
}

// USendMany is SendMany with unreliable messages and no acknowledgements:
// it returns once the first hop is sent.
func (n *Node) USendMany(cmd uint16, addrs []string, data interface{}, limit int) error {
	return n.fan.sendMany(cmd, addrs, data, limit, false)
}

func (f *fanout) sendMany(cmd uint16, addrs []string, data interface{}, limit int, reliable bool) (err error) {
	if f.life.closed.Load() {
		return sendErr("fan-out", ErrClosed)
	}
	payload, err := encodeData(data)
	if err != nil {
		return sendErr("fan-out", err)
	}
	if len(payload) > MaxMessageSize {
		return sendErr("fan-out", fmt.Errorf("%w: %d bytes, limit %d", rudp.ErrTooLarge, len(payload), MaxMessageSize))
	}
	var failed []string
	seen := make(map[netip.AddrPort]bool, len(addrs))
	targets := make([]netip.AddrPort, 0, len(addrs))
	toSelf := false
	for _, a := range addrs {
		ap, err := resolve(a)
		if err != nil {
			failed = append(failed, a)
			continue
		}
		if seen[ap] {
			continue
		}
		seen[ap] = true
		if ap == f.b.self {
			toSelf = true
			continue
		}
		targets = append(targets, ap)
	}
	if limit <= 0 || limit > len(targets) {
		limit = max(len(targets), 1)
	}
	f.metrics.fanoutSends.Add(1)
	m := &fanMsg{id: rand.Uint64(), cmd: cmd, limit: limit, origin: f.b.self, payload: payload}
	if reliable {
		m.flags = fanReliable
		m.deadline = time.Now().Add(fanoutTimeout)
	}
	if t := f.b.tracing.get(); t != nil {
		_, span := startSpan(context.Background(), t, nil, trace.SpanKindProducer, "SendMany", cmd, "",
			keyReliable.Bool(reliable), keyTargets.Int(len(seen)+len(failed)))
		defer func() { endSpan(span, err) }()
		m.tc = carried(span)
	}
	f.firstSight(m.id)
	if toSelf {
		f.deliverHere(f.b.self, f.b.selfStr, cmd, payload, true, m.tc)
	}
	for _, ap := range f.spread(m, targets) {
		failed = append(failed, f.names.name(ap))
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
func (f *fanout) spread(m *fanMsg, targets []netip.AddrPort) []netip.AddrPort {
	if len(targets) == 0 {
		return nil
	}
	// No relay gets a share above maxFanoutShare.
	groups := split(targets, max(m.limit, (len(targets)+maxFanoutShare)/(maxFanoutShare+1)))
	if m.flags&fanReliable == 0 {
		var failed []netip.AddrPort
		for _, g := range groups {
			if err := f.sendHop(m, g[0], g[1:], nil); err != nil {
				failed = append(failed, g[0])
			}
		}
		return failed
	}
	// Every hop is sent from this goroutine; one waiter and one deadline
	// serve them all.
	w := newSpreadWait(len(groups))
	for i, g := range groups {
		f.startHop(m, g[0], g[1:], w, i)
	}
	// Leave the children time to report their own shares before our deadline.
	hop := max(time.Until(m.deadline)*9/10, 0)
	timer := time.NewTimer(hop)
	var late error
	select {
	case <-w.done:
	case <-timer.C:
		late = fmt.Errorf("%w: no fan-out ack within %v: %w", ErrSend, hop, context.DeadlineExceeded)
	case <-f.life.done:
		late = ErrClosed
	}
	timer.Stop()
	if late != nil {
		for i, g := range groups {
			f.forget(fanKey{m.id, g[0]}, w)
			w.answer(i, fanAck{err: late}) // ignored where an answer came
		}
	}
	var failed, again []netip.AddrPort
	w.mu.Lock()
	acks := w.acks
	w.mu.Unlock()
	for i, g := range groups {
		head, rest := g[0], g[1:]
		if a := acks[i]; a.err == nil {
			// Deliver what head refused (its view did not list it yet)
			// ourselves, but only nodes of the share we gave it.
			failed = append(failed, a.failed...)
			again = append(again, within(a.refused, rest)...)
			continue
		}
		// head cannot be reached: this node delivers its share itself.
		f.metrics.relayTakeovers.Add(1)
		f.failed(f.names.name(head), acks[i].err)
		failed = append(failed, head)
		again = append(again, rest...)
	}
	if len(again) > 0 {
		failed = append(failed, f.spread(m, again)...)
	}
	return failed
}

// startHop sends hop i of a reliable spread: head gets m with rest as its
// share. A hop with a share is confirmed by a fan-out ack (sent once the
// share is done), a hop without one by the transport's acknowledgement of
// the message. It never waits for queue room itself: a hop to a full
// queue waits on a goroutine of its own, until the fan-out's deadline.
func (f *fanout) startHop(m *fanMsg, head netip.AddrPort, rest []netip.AddrPort, w *spreadWait, i int) {
	k := fanKey{m.id, head}
	f.wait(k, w, i)
	var done func(error)
	if len(rest) == 0 {
		done = func(err error) { f.deliver(k, fanAck{err: err}) }
	}
	fail := func(err error) {
		f.forget(k, w)
		w.answer(i, fanAck{err: err})
	}
	err := f.sendHopNoWait(m, head, rest, done)
	if !errors.Is(err, rudp.ErrWouldBlock) {
		if err != nil {
			fail(err)
		}
		return
	}
	if !f.life.start(func() {
		if err := f.sendHop(m, head, rest, done); err != nil {
			fail(err)
		}
	}) {
		fail(ErrClosed)
	}
}

// sendHopNoWait is sendHop (reliable) that returns rudp.ErrWouldBlock
// instead of waiting for room in head's queue.
func (f *fanout) sendHopNoWait(m *fanMsg, head netip.AddrPort, rest []netip.AddrPort, done func(error)) error {
	if len(rest) > maxFanoutShare {
		return fmt.Errorf("%w: fan-out share of %d nodes, limit %d", rudp.ErrTooLarge, len(rest), maxFanoutShare)
	}
	if f.life.closed.Load() {
		return ErrClosed
	}
	kind, hdr := m.frame(rest)
	return f.b.tr.SendMsg(context.Background(), head, kind, hdr, m.payload,
		rudp.SendOptions{AckNow: true, Done: done, NoWait: true})
}

// sendHop sends m to head with rest as its share; done, if set, hears the
// transport's acknowledgement (reliable fan-out only).
func (f *fanout) sendHop(m *fanMsg, head netip.AddrPort, rest []netip.AddrPort, done func(error)) error {
	if len(rest) > maxFanoutShare {
		return fmt.Errorf("%w: fan-out share of %d nodes, limit %d", rudp.ErrTooLarge, len(rest), maxFanoutShare)
	}
	kind, hdr := m.frame(rest)
	if f.life.closed.Load() {
		return ErrClosed
	}
	if m.flags&fanReliable == 0 {
		return f.b.tr.USendWithHeader(head, kind, hdr, m.payload)
	}
	// A relay's ack would otherwise wait for data that never comes. A full
	// queue to head is waited on only until the fan-out's deadline.
	return f.send.bounded(head, kind, hdr, m.payload, rudp.SendOptions{AckNow: true, Done: done}, m.deadline)
}

// frame returns the kind and header of the hop of m with share: a batch
// with the trace context first when m carries one.
func (m *fanMsg) frame(share []netip.AddrPort) (byte, []byte) {
	hdr := fanoutHeader(m, share)
	if m.tc != nil {
		return kindBatch, tracedHeader(m.tc, kindFanout, hdr, len(m.payload))
	}
	return kindFanout, hdr
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
	return appendAddrList(hdr, share)
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
		// The frame carries the time left; no hop waits past fanoutTimeout.
		m.deadline = time.Now().Add(min(time.Duration(ms)*time.Millisecond, fanoutTimeout))
	}
	var err error
	if m.origin, p, err = readAddr(p[17:]); err != nil {
		return nil, nil, err
	}
	var share []netip.AddrPort
	if share, p, err = readAddrList(p); err != nil {
		return nil, nil, err
	}
	if m.limit < 1 {
		m.limit = 1
	}
	m.payload = p
	return m, share, nil
}

// handleFanout delivers a fan-out message here (once per ID) and relays
// it to this node's share, off the read goroutine. Only share entries that
// this node's MARS view lists (same app) are relayed to; the others are
// refused and reported failed in the ack, so a forged share list costs
// nothing. The payload is shared by every hop, never copied per head. tc
// is the sender's trace context, if it sent one: the delivery here and
// the relay's span are its children.
func (f *fanout) handleFanout(from netip.AddrPort, p []byte, reliable bool, tc *trace.SpanContext) {
	m, share, err := parseFanout(p)
	if err != nil {
		f.b.bad("malformed fan-out", from)
		return
	}
	if f.strict.drop(from) {
		return
	}
	if f.firstSight(m.id) {
		f.metrics.fanoutDelivered.Add(1)
		f.deliverHere(from, f.names.name(m.origin), m.cmd, m.payload, reliable, tc)
	}
	if len(share) == 0 {
		return // a leaf: the transport's acknowledgement is the parent's confirmation
	}
	listed, refused := f.listedShare(share)
	if t := f.b.tracing.get(); t != nil && len(listed) > 0 {
		_, span := startSpan(context.Background(), t, tc, trace.SpanKindProducer, "SendMany relay", m.cmd, f.names.name(from),
			keyReliable.Bool(m.flags&fanReliable != 0 && reliable), keyTargets.Int(len(listed)))
		m.tc = carried(span)
		f.relayTraced(from, len(p), reliable, m, share, listed, refused, span)
		return
	}
	if m.flags&fanReliable == 0 || !reliable {
		m.flags &^= fanReliable
		if len(listed) > 0 {
			f.in.submit(from, len(p), false, funcTask{do: func() { f.spread(m, listed) }})
		}
		return
	}
	if len(listed) == 0 {
		f.sendFanAck(from, m.id, nil, refused, m.deadline)
		return
	}
	f.in.submit(from, len(p), true, funcTask{do: func() {
		f.sendFanAck(from, m.id, f.spread(m, listed), refused, m.deadline)
	}, no: func() {
		f.sendFanAck(from, m.id, nil, share, m.deadline) // shutting down
	}})
}

// relayTraced is the relay part of handleFanout when tracing is on (listed
// is not empty): span, the relay's, ends once its share is done.
func (f *fanout) relayTraced(from netip.AddrPort, size int, reliable bool, m *fanMsg, share, listed, refused []netip.AddrPort, span trace.Span) {
	if m.flags&fanReliable == 0 || !reliable {
		m.flags &^= fanReliable
		f.in.submit(from, size, false, funcTask{do: func() {
			endRelaySpan(span, f.spread(m, listed))
		}, no: func() { endRelaySpan(span, nil) }})
		return
	}
	f.in.submit(from, size, true, funcTask{do: func() {
		failed := f.spread(m, listed)
		endRelaySpan(span, failed)
		f.sendFanAck(from, m.id, failed, refused, m.deadline)
	}, no: func() {
		endRelaySpan(span, nil)
		f.sendFanAck(from, m.id, nil, share, m.deadline) // shutting down
	}})
}

// endRelaySpan ends a relay's span with the nodes it could not reach.
func endRelaySpan(span trace.Span, failed []netip.AddrPort) {
	var err error
	if len(failed) > 0 {
		err = fmt.Errorf("%w: %d nodes of the share not reached", ErrSend, len(failed))
	}
	endSpan(span, err)
}

// listedShare splits a share into the nodes this node's view lists (other
// than itself) and the rest. A node listed twice is relayed to once (each
// hop of a spread waits for its own peer).
func (f *fanout) listedShare(share []netip.AddrPort) (listed, refused []netip.AddrPort) {
	view := f.view()
	listed = share[:0:0]
	var seen map[netip.AddrPort]bool
	if len(share) > 1 {
		seen = make(map[netip.AddrPort]bool, len(share))
	}
	for _, a := range share {
		if seen != nil {
			if seen[a] {
				continue
			}
			seen[a] = true
		}
		if _, ok := view.Node(a.String()); ok && a != f.b.self {
			listed = append(listed, a)
		} else {
			refused = append(refused, a)
		}
	}
	if len(refused) > 0 {
		f.b.warnOnce("mesh: fan-out share lists nodes the view does not", "count", len(refused))
	}
	return listed, refused
}

// within returns the addresses of list that are in of.
func within(list, of []netip.AddrPort) []netip.AddrPort {
	if len(list) == 0 {
		return nil
	}
	set := make(map[netip.AddrPort]bool, len(of))
	for _, a := range of {
		set[a] = true
	}
	var out []netip.AddrPort
	for _, a := range list {
		if set[a] {
			out = append(out, a)
			delete(set, a)
		}
	}
	return out
}

// appendAddrList writes [count u16]{addr}, at most maxFanoutShare entries.
func appendAddrList(b []byte, list []netip.AddrPort) []byte {
	list = list[:min(len(list), maxFanoutShare)]
	b = binary.BigEndian.AppendUint16(b, uint16(len(list)))
	for _, a := range list {
		b = appendAddr(b, a)
	}
	return b
}

// readAddrList reads [count u16]{addr} (at most maxFanoutShare entries).
func readAddrList(p []byte) ([]netip.AddrPort, []byte, error) {
	if len(p) < 2 {
		return nil, nil, errMalformed
	}
	count := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if count > len(p)/2 || count > maxFanoutShare {
		return nil, nil, errMalformed
	}
	list := make([]netip.AddrPort, 0, count)
	for range count {
		var a netip.AddrPort
		var err error
		if a, p, err = readAddr(p); err != nil {
			return nil, nil, err
		}
		list = append(list, a)
	}
	return list, p, nil
}

// sendFanAck answers a relay's parent: [id u64][failed list][refused list]
// (a reader that knows only the failed list ignores the rest).
// It never waits on a full queue (it may run on the read goroutine): a
// bounded hand-off sends it by the fan-out's deadline.
func (f *fanout) sendFanAck(to netip.AddrPort, id uint64, failed, refused []netip.AddrPort, deadline time.Time) {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12+8*(len(failed)+len(refused))), id)
	b = appendAddrList(b, failed)
	b = appendAddrList(b, refused)
	if deadline.IsZero() {
		deadline = time.Now().Add(fanoutTimeout)
	}
	f.send.soon(to, kindFanoutAck, nil, b, rudp.SendOptions{AckNow: true}, deadline)
}

func (f *fanout) handleFanoutAck(from netip.AddrPort, p []byte) {
	id, failed, refused, err := parseFanoutAck(p)
	if err != nil {
		f.b.bad("malformed fan-out ack", from)
		return
	}
	f.deliver(fanKey{id, from}, fanAck{failed: failed, refused: refused})
}

func parseFanoutAck(p []byte) (id uint64, failed, refused []netip.AddrPort, err error) {
	if len(p) < 10 {
		return 0, nil, nil, errMalformed
	}
	id = binary.BigEndian.Uint64(p)
	if failed, p, err = readAddrList(p[8:]); err != nil {
		return 0, nil, nil, err
	}
	if len(p) > 0 {
		if refused, _, err = readAddrList(p); err != nil {
			return 0, nil, nil, err
		}
	}
	return id, failed, refused, nil
}
