package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// Pub-sub: Subscribe, QueueSubscribe, Publish and Request (see the package
// doc, "Pub-sub"). A publisher sends a message once to every node with a
// matching plain subscription (a kindPublish message on the reliable
// session: in order, exactly once while the session lives) and the node
// hands it to each of its matching subscriptions; for each queue group
// with a matching member it picks one member (round robin) and sends an
// acked delivery, trying the next member if that one did not take it.

// ErrNoSubscribers: a Request found no node subscribed to its topic, or a
// queue group no member that took the message. It is wrapped in a send
// error.
var ErrNoSubscribers = errors.New("mesh: no subscriber took the message")

// pubsub is a node's pub-sub state.
type pubsub struct {
	b    *base
	life *lifecycle

	mu        sync.Mutex
	subs      []*Subscription
	counts    map[interestEntry]int // local subscriptions per entry
	ver       uint64                // version of the local interest
	snapshot  atomic.Pointer[[]*Subscription]
	localEnts atomic.Pointer[[]interestEntry]
	lastMatch atomic.Pointer[pubMatch] // handlePublish's last topic
	localVer  atomic.Uint64

	pushMu    sync.Mutex // one interest push at a time, the latest version
	pushedVer uint64

	rmu       sync.Mutex
	remote    map[string]remoteInterest // by node address
	remoteVer uint64
	buildMu   sync.Mutex
	route     atomic.Pointer[routeTable]

	rr, lrr atomic.Uint64 // round robin of queue picks (publisher, receiver)

	published, delivered, dropped, slowConsumers, retries, refused, queueFailed atomic.Uint64

	inflight chan struct{} // queue deliveries under way (maxQueueInFlight)
	workers  idlePool      // parked subscription workers (pubsub_sub.go)

	topicMu sync.Mutex
	byTopic map[string]uint64 // published per topic, at most maxTopicStats topics

	answerTo func(r *replyTo, payload []byte) // sends an answer (set by build)
	push     func(ver uint64)                 // pushInterest (set by build)
}

// maxTopicStats bounds the topics counted one by one; the rest count
// under "other".
const maxTopicStats = 1024

func newPubsub(b *base, life *lifecycle) *pubsub {
	return &pubsub{b: b, life: life, counts: make(map[interestEntry]int), remote: make(map[string]remoteInterest),
		byTopic: make(map[string]uint64), inflight: make(chan struct{}, maxQueueInFlight)}
}

func (ps *pubsub) localEntries() []interestEntry {
	if p := ps.localEnts.Load(); p != nil {
		return *p
	}
	return nil
}

func (ps *pubsub) subscriptions() []*Subscription {
	if p := ps.snapshot.Load(); p != nil {
		return *p
	}
	return nil
}

// answer sends the answer to a queue delivery or Request.
func (ps *pubsub) answer(r *replyTo, code byte, data []byte) {
	ps.answerTo(r, append([]byte{code}, data...))
}

// Subscribe subscribes h to a topic pattern ("a.b", "a.*.c", "a.>"; see
// the package doc): h gets every message published to a matching topic
// anywhere in the cluster, one at a time, in publish order per publisher,
// on a goroutine of the subscription's own. It returns once every node
// this node's view lists as online or joining has acknowledged the
// subscription or could not be reached (at most the retry timeout):
// messages published after that reach it. Errors wrap ErrBadTopic,
// ErrClosed, or refuse a guest (never listed, so never routed to).
func (n *Node) Subscribe(pattern string, h func(m *Message)) (*Subscription, error) {
	return n.subscribe(pattern, "", h)
}

// QueueSubscribe is Subscribe in a queue group: each message published to
// a matching topic goes to one member of the group (over the whole
// cluster), spread evenly; see the package doc for the guarantees.
func (n *Node) QueueSubscribe(pattern, group string, h func(m *Message)) (*Subscription, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	return n.subscribe(pattern, group, h)
}

func (n *Node) subscribe(pattern, group string, h func(*Message)) (*Subscription, error) {
	if err := checkPattern(pattern); err != nil {
		return nil, err
	}
	switch {
	case h == nil:
		return nil, errors.New("mesh: Subscribe with a nil handler")
	case n.guest:
		return nil, errors.New("mesh: a guest cannot subscribe (it is never listed, so never routed to)")
	case n.life.closed.Load() || n.life.draining.Load():
		return nil, fmt.Errorf("%w: subscribe %q", ErrClosed, pattern)
	}
	ps := n.ps
	s := &Subscription{ps: ps, pattern: pattern, group: group, h: h, maxMsgs: DefaultPendingMsgs, maxBytes: DefaultPendingBytes}
	e := interestEntry{pattern, group}
	ps.mu.Lock()
	if ps.counts[e] == 0 && len(ps.counts) >= maxInterest {
		ps.mu.Unlock()
		return nil, fmt.Errorf("%w: more than %d distinct patterns and groups on one node", ErrBadTopic, maxInterest)
	}
	ps.subs = append(ps.subs, s)
	ps.counts[e]++
	ver := ps.changedLocked(ps.counts[e] == 1)
	ps.mu.Unlock()
	n.pushInterest(ver)
	return s, nil
}

// remove takes a subscription out and tells the cluster if the node's
// interest changed.
func (ps *pubsub) remove(s *Subscription) error {
	ps.mu.Lock()
	i := slices.Index(ps.subs, s)
	if i < 0 {
		ps.mu.Unlock()
		return nil
	}
	ps.subs = slices.Delete(ps.subs, i, i+1)
	e := interestEntry{s.pattern, s.group}
	ps.counts[e]--
	gone := ps.counts[e] == 0
	if gone {
		delete(ps.counts, e)
	}
	ver := ps.changedLocked(gone)
	ps.mu.Unlock()
	ps.pushLocal(ver)
	return nil
}

// changedLocked publishes the new list of subscriptions to the read path
// and, if the entries changed, makes a new interest version (0: none).
func (ps *pubsub) changedLocked(entriesChanged bool) uint64 {
	subs := slices.Clone(ps.subs)
	ps.snapshot.Store(&subs)
	if !entriesChanged {
		return 0
	}
	ents := make([]interestEntry, 0, len(ps.counts))
	for e := range ps.counts {
		ents = append(ents, e)
	}
	slices.SortFunc(ents, func(a, b interestEntry) int {
		if c := compareStrings(a.pattern, b.pattern); c != 0 {
			return c
		}
		return compareStrings(a.group, b.group)
	})
	ps.localEnts.Store(&ents)
	ps.localVer.Add(1)
	ps.ver++
	return ps.ver
}

// pushLocal is set by the node: pushInterest.
func (ps *pubsub) pushLocal(ver uint64) {
	if ps.push != nil {
		ps.push(ver)
	}
}

// pushInterest makes interest version ver (or a later one) known: in the
// node's MARS record and, acked, to every node the view lists as online
// or joining. Each push waits at most the retry timeout.
func (n *Node) pushInterest(ver uint64) {
	if ver == 0 {
		return
	}
	ps := n.ps
	ps.pushMu.Lock()
	defer ps.pushMu.Unlock()
	if ps.pushedVer >= ver {
		return // a push since carried it
	}
	ps.mu.Lock()
	ver = ps.ver
	rec := appendInterest(nil, ver, ps.localEntries())
	ps.mu.Unlock()
	if err := n.mc.SetValue(topicsValue, string(appendInterestText(nil, ver, ps.localEntries()))); err != nil {
		n.log.Warn("mesh: topic interest not set in the MARS record", "err", err)
	}
	body := binary.BigEndian.AppendUint64(nil, n.mc.Incarnation())
	body = append(body, rec...)
	ctx, cancel := context.WithTimeout(n.life.ctx, n.cfg.RetryTimeoutDuration())
	defer cancel()
	var wg sync.WaitGroup
	for _, nd := range n.mc.View().Nodes() {
		if nd.Self || nd.State != StateOnline && nd.State != StateJoining {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			if _, err := n.request(ctx, time.Time{}, tableInternal, internalInterest, addr, body); err != nil {
				n.log.Debug("mesh: topic interest not acknowledged", "to", addr, "err", err)
			}
		}(nd.Addr)
	}
	wg.Wait()
	ps.pushedVer = ver
}

// Publish sends payload to every subscription whose pattern matches topic,
// on every node (this one included), and for each queue group with a
// matching member to one member. It returns once the message is queued
// to every plain subscriber node (waiting for room in a full peer queue
// until ctx ends) and each queue group's delivery has started: that goes
// on in the background (at most 4,096 at once per node; past that Publish
// waits for one to end), as an acked request to one member, and a member
// that refuses, drains or dies is skipped and the next one tried, for up
// to twice the retry timeout; a delivery no member took is counted
// (TopicStats.QueueFailed) and logged. Publishing to a topic nobody
// subscribes to is not an error. Errors: ErrBadTopic, or a send error
// naming the first node it could not reach (the others still got it).
func (n *Node) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	if len(payload) > MaxMessageSize-MaxTopicLen-MaxGroupLen-8 {
		return sendErr(topic, fmt.Errorf("%w: %d bytes", rudp.ErrTooLarge, len(payload)))
	}
	if n.life.closed.Load() {
		return sendErr(topic, ErrClosed)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ps := n.ps
	r := ps.routes(n.mc.View()).lookup(topic)
	ps.published.Add(1)
	ps.countTopic(topic)
	var first error
	if r.local {
		n.deliverLocal(topic, slices.Clone(payload))
	}
	if len(r.plain) > 0 {
		hdr := appendPublish(make([]byte, 0, 1+len(topic)), topic)
		// To several nodes, each session's flusher sends while this
		// goroutine queues to the next, and a burst of publishes shares
		// packets. A subscriber acknowledges at once, in the wake-up that
		// delivered the message, not after ackDelay in a second one:
		// with many subscriber processes per core, that halves the time
		// until all have it (measured: bench -suite xpubsub, 64).
		o := rudp.SendOptions{Later: len(r.plain) > 1, AckNow: true}
		for _, m := range r.plain {
			if err := n.tr.SendMsg(ctx, m.ap, kindPublish, hdr, payload, o); err != nil {
				n.ev.sendFailed(m.addr, err)
				if first == nil {
					first = sendErr(m.addr, err)
				}
			}
		}
	}
	for _, g := range r.groups {
		if err := n.queueAsync(ctx, topic, g, payload); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// queueDeliveryWait (plus twice the retry timeout) bounds how long a
// queue delivery waits for its member's handler to return.
const queueDeliveryWait = 10 * time.Second

// maxQueueInFlight bounds the queue deliveries a node has under way; a
// Publish past it waits for one to end (or its ctx).
const maxQueueInFlight = 4096

// queueAsync starts giving a message to one member of a queue group, on a
// goroutine of its own: Publish does not wait for the member's answer.
// Failures are counted (TopicStats.QueueFailed) and logged.
func (n *Node) queueAsync(ctx context.Context, topic string, g groupRoute, payload []byte) error {
	ps := n.ps
	select {
	case ps.inflight <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: queue group %q of topic %q: waiting for a delivery slot: %w", ErrSend, g.name, topic, ctx.Err())
	case <-n.life.done:
		return sendErr(topic, ErrClosed)
	}
	body := topicBody(0, g.name, topic, payload)
	if !n.life.start(func() {
		defer func() { <-ps.inflight }()
		if _, err := n.toOne(n.life.ctx, topic, g.members, body, false); err != nil {
			ps.queueFailed.Add(1)
			n.warnOnce("mesh: a queue group's message was not delivered", "group", g.name, "topic", topic, "err", err)
		}
	}) {
		<-ps.inflight
		return sendErr(topic, ErrClosed)
	}
	return nil
}

// topicBody is a queue delivery or Request (see pubsub_wire.go).
func topicBody(flags byte, group, topic string, payload []byte) []byte {
	body := appendTopicReq(make([]byte, 0, 3+len(group)+len(topic)+len(payload)), flags, group, topic)
	return append(body, payload...)
}

// Request sends payload to one node with a subscription matching topic
// (plain or in a queue group; round robin over those nodes) and returns
// the reply its handler set with Message.Respond (nil if it set none).
// Without a deadline in ctx it waits DefaultRPCTimeout. A node that
// refuses (no matching subscription any more, at its pending limit,
// draining) or dies is skipped and the next one tried; the handler runs
// at most once unless its node dies before it answered. Errors: as
// SendRPC's (a *RemoteError when the handler panicked), or a send error
// wrapping ErrNoSubscribers.
func (n *Node) Request(ctx context.Context, topic string, payload []byte) ([]byte, error) {
	if err := checkTopic(topic); err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRPCTimeout)
		defer cancel()
	}
	r := n.ps.routes(n.mc.View()).lookup(topic)
	n.ps.published.Add(1)
	n.ps.countTopic(topic)
	return n.toOne(ctx, topic, r.any, topicBody(topicFlagRequest, "", topic, payload), true)
}

// toOne gives a message to one of members (a queue group's, or any node
// with a matching subscription for group ""), trying the next on a
// refusal or a dead member, within ctx's deadline or the retry timeout.
func (n *Node) toOne(ctx context.Context, topic string, members []member, body []byte, request bool) ([]byte, error) {
	if len(members) == 0 {
		return nil, sendErr(topic, fmt.Errorf("%w: topic %q", ErrNoSubscribers, topic))
	}
	// Time for the member's handler to run, or for it to die (found dead
	// after the retry timeout) and another to take the message.
	deadline := time.Now().Add(queueDeliveryWait + 2*n.cfg.RetryTimeoutDuration())
	if dl, ok := ctx.Deadline(); ok && (request || dl.Before(deadline)) {
		deadline = dl
	}
	start := int(n.ps.rr.Add(1) % uint64(len(members)))
	var last error
	for i := range members {
		m := members[(start+i)%len(members)]
		if i > 0 {
			n.ps.retries.Add(1)
		}
		if !m.self {
			if st := n.mc.View().State(m.addr); st == StateDraining || st == StateOffline || st == StateGone {
				continue // drained or dead since the route was built
			}
		}
		if !time.Now().Before(deadline) {
			break
		}
		resp, err := n.request(ctx, deadline, tableInternal, internalTopic, m.addr, body)
		switch {
		case err == nil && len(resp) == 0:
			return nil, fmt.Errorf("%w: topic %q on %s: empty answer", ErrRequest, topic, m.addr)
		case err == nil && resp[0] == topicNoReply:
			return nil, nil
		case err == nil && resp[0] == topicTaken:
			return resp[1:], nil
		case err == nil && resp[0] == topicFailed:
			return nil, &RemoteError{Addr: m.addr, Message: string(resp[1:])}
		case err == nil:
			last = fmt.Errorf("%w: topic %q: %s did not take it (code %d)", ErrNoSubscribers, topic, m.addr, resp[0])
		case IsDraining(err) || IsSendError(err):
			last = err // not taken, or its node died: the next member
		default:
			return nil, err // a timeout, or ctx ended: it may have taken it
		}
	}
	if last == nil {
		last = fmt.Errorf("%w: topic %q", ErrNoSubscribers, topic)
	}
	if errors.Is(last, ErrNoSubscribers) {
		return nil, sendErr(topic, last)
	}
	return nil, last
}

// deliverLocal hands a message published here to this node's matching
// plain subscriptions.
func (n *Node) deliverLocal(topic string, payload []byte) {
	for _, s := range n.ps.subscriptions() {
		if s.group == "" && matchTopic(s.pattern, topic) {
			s.offer(&Message{Topic: topic, Payload: payload, From: n.selfStr})
		}
	}
}

// handlePublish takes a kindPublish message (on the read goroutine: it
// never blocks). A node that drains takes no more.
func (n *Node) handlePublish(from netip.AddrPort, p []byte) {
	raw, payload, err := splitPublish(p)
	if err != nil {
		n.bad("malformed publish", from)
		return
	}
	if n.strict.drop(from) {
		return
	}
	if n.life.draining.Load() {
		n.ps.refused.Add(1)
		return
	}
	topic, subs, ok := n.ps.matchPublished(raw)
	if !ok {
		n.bad("malformed publish", from)
		return
	}
	if len(subs) == 0 {
		return
	}
	sender := n.names.recvName(from)
	for _, s := range subs {
		s.offer(&Message{Topic: topic, Payload: payload, From: sender})
	}
}

// pubMatch is the last topic a node received a publish to, checked, and
// its matching plain subscriptions in one snapshot of them.
type pubMatch struct {
	topic string
	snap  *[]*Subscription
	subs  []*Subscription
}

// matchPublished checks a received topic and returns it with the plain
// subscriptions it matches; a burst to one topic reuses the last answer.
func (ps *pubsub) matchPublished(raw []byte) (string, []*Subscription, bool) {
	snap := ps.snapshot.Load()
	if c := ps.lastMatch.Load(); c != nil && c.snap == snap && string(raw) == c.topic {
		return c.topic, c.subs, true
	}
	topic := string(raw)
	if checkTopic(topic) != nil {
		return "", nil, false
	}
	var subs []*Subscription
	if snap != nil {
		for _, s := range *snap {
			if s.group == "" && matchTopic(s.pattern, topic) {
				subs = append(subs, s)
			}
		}
	}
	ps.lastMatch.Store(&pubMatch{topic: topic, snap: snap, subs: subs})
	return topic, subs, true
}

// servePubsub answers pub-sub's internal requests (on the read goroutine,
// or the caller's for this node: it never blocks).
func (n *Node) servePubsub(from netip.AddrPort, hdr requestHeader, body []byte) {
	var deadline time.Time
	if hdr.timeoutMs > 0 {
		deadline = time.Now().Add(time.Duration(hdr.timeoutMs) * time.Millisecond)
	}
	if n.strict.drop(from) {
		return
	}
	r := &replyTo{from: from, id: hdr.id, deadline: deadline}
	switch hdr.cmd {
	case internalInterest:
		if len(body) < 8 {
			n.bad("malformed topic interest", from)
			return
		}
		ver, entries, err := parseInterest(body[8:])
		if err != nil {
			n.bad("malformed topic interest", from)
			n.respondSoon(from, hdr.id, statusError, []byte("malformed topic interest"), deadline)
			return
		}
		n.ps.heard(n.names.name(from), binary.BigEndian.Uint64(body), ver, entries)
		n.respondSoon(from, hdr.id, statusOK, nil, deadline)
	case internalTopic:
		req, err := parseTopicReq(body)
		if err != nil {
			n.bad("malformed topic delivery", from)
			n.respondSoon(from, hdr.id, statusError, []byte("malformed topic delivery"), deadline)
			return
		}
		if n.life.draining.Load() {
			n.ps.refused.Add(1)
			n.respondSoon(from, hdr.id, statusDraining, n.drainNotice(), deadline)
			return
		}
		n.takeOne(r, req)
	default:
		n.respondSoon(from, hdr.id, statusNoHandler, []byte(fmt.Sprintf("no internal command %d", hdr.cmd)), deadline)
	}
}

// takeOne gives a queue delivery or Request to one matching subscription
// of this node (round robin), or answers why none took it.
func (n *Node) takeOne(r *replyTo, req topicReq) {
	var cands []*Subscription
	for _, s := range n.ps.subscriptions() {
		if (req.group == "" || s.group == req.group) && matchTopic(s.pattern, req.topic) {
			cands = append(cands, s)
		}
	}
	if len(cands) == 0 {
		n.ps.answer(r, topicNoSub, nil)
		return
	}
	m := &Message{Topic: req.topic, Payload: req.payload, From: n.names.name(r.from)}
	// The answer goes once the handler returned (a queue delivery's
	// publisher tries another member if this node dies first).
	m.reply = r
	r.ackOnly = req.flags&topicFlagRequest == 0
	start := int(n.ps.lrr.Add(1) % uint64(len(cands)))
	for i := range cands {
		s := cands[(start+i)%len(cands)]
		m.Group = s.group
		if s.offer(m) {
			return
		}
	}
	n.ps.answer(r, topicSlow, nil)
}

func (ps *pubsub) countTopic(topic string) {
	ps.topicMu.Lock()
	if _, ok := ps.byTopic[topic]; ok || len(ps.byTopic) < maxTopicStats {
		ps.byTopic[topic]++
	} else {
		ps.byTopic["other"]++
	}
	ps.topicMu.Unlock()
}
