package mesh

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Default pending limits of a subscription (as NATS's): messages queued
// for its handler and not yet handled. Past either, new messages are
// dropped and counted (a slow consumer); the publisher and the transport
// never wait for a handler.
const (
	DefaultPendingMsgs  = 65536
	DefaultPendingBytes = 64 << 20
)

// Message is one published message, as a subscription's handler gets it.
type Message struct {
	Topic   string // the topic it was published to
	Payload []byte // owned by the handler
	From    string // the publisher's mesh address
	Group   string // the queue group it was given to ("" for a plain subscription)

	reply *replyTo
}

// replyTo is where a Request's reply goes.
type replyTo struct {
	from     netip.AddrPort
	id       uint64
	deadline time.Time
	ackOnly  bool // a queue delivery: answered once the handler returned, with no reply

	mu   sync.Mutex // Respond may be called from another goroutine
	data []byte
	set  bool
	done bool
}

// ErrNoReply: Respond was called on a message that is not a Request, or
// after its handler returned, or twice.
var ErrNoReply = errors.New("mesh: message takes no reply")

// Respond sets the reply to a Request; it is sent when the handler
// returns. It fails with ErrNoReply if the message is not a Request,
// after the handler returned, or when a reply is already set. It may be
// called from any goroutine.
func (m *Message) Respond(data []byte) error {
	r := m.reply
	if r == nil || r.ackOnly {
		return fmt.Errorf("%w (topic %q)", ErrNoReply, m.Topic)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.set {
		return fmt.Errorf("%w (topic %q)", ErrNoReply, m.Topic)
	}
	r.data, r.set = data, true
	return nil
}

// IsRequest reports whether the publisher waits for a reply (Request).
func (m *Message) IsRequest() bool { return m.reply != nil && !m.reply.ackOnly }

// Subscription is one handler subscribed to a pattern (and queue group).
type Subscription struct {
	ps      *pubsub
	pattern string
	group   string
	h       func(*Message)

	mu       sync.Mutex
	q        []*Message
	head     int
	bytes    int
	running  bool
	closed   bool
	maxMsgs  int
	maxBytes int
	slow     bool // over a limit since the last message it took

	delivered atomic.Uint64 // handed to the handler
	dropped   atomic.Uint64 // dropped at a pending limit
}

// Pattern is the subscription's topic pattern.
func (s *Subscription) Pattern() string { return s.pattern }

// Group is the subscription's queue group ("" for a plain subscription).
func (s *Subscription) Group() string { return s.group }

// Delivered counts the messages its handler was given.
func (s *Subscription) Delivered() uint64 { return s.delivered.Load() }

// Dropped counts the messages dropped at its pending limits.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Pending returns the messages and bytes waiting for its handler.
func (s *Subscription) Pending() (msgs, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q) - s.head, s.bytes
}

// SetPendingLimits sets how many messages and bytes may wait for the
// handler (values <= 0 keep the current limit); past either, new messages
// are dropped and counted (Dropped, Node.TopicStats).
func (s *Subscription) SetPendingLimits(msgs, bytes int) {
	s.mu.Lock()
	if msgs > 0 {
		s.maxMsgs = msgs
	}
	if bytes > 0 {
		s.maxBytes = bytes
	}
	s.mu.Unlock()
}

// Unsubscribe removes the subscription: its handler gets no message
// after Unsubscribe returns but the one it may be running, and the other
// nodes hear of it (acked, like Subscribe). Safe to call more than once.
func (s *Subscription) Unsubscribe() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	q := s.q[s.head:]
	s.q, s.head, s.bytes = nil, 0, 0
	s.mu.Unlock()
	for _, m := range q {
		if m.reply != nil { // not taken after all: the publisher tries another node
			s.ps.answer(m.reply, topicNoSub, nil)
		}
	}
	return s.ps.remove(s)
}

// offer queues a message for the handler. It never blocks; it returns
// false when the subscription is closed or at a pending limit (counted).
func (s *Subscription) offer(m *Message) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if len(s.q)-s.head >= s.maxMsgs || s.bytes+len(m.Payload) > s.maxBytes && len(s.q) > s.head {
		first := !s.slow
		s.slow = true
		s.mu.Unlock()
		s.dropped.Add(1)
		s.ps.dropped.Add(1)
		if first {
			s.ps.slowConsumers.Add(1)
			s.ps.b.warnOnce("mesh: slow subscription, messages dropped", "pattern", s.pattern, "group", s.group)
		}
		return false
	}
	s.slow = false
	s.q = append(s.q, m)
	s.bytes += len(m.Payload)
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start && !s.ps.startRun(s) {
		// The node is shutting down: nobody will run it (the queue held
		// only this message, or a worker would be running).
		s.mu.Lock()
		s.running = false
		s.q, s.head, s.bytes = s.q[:0], 0, 0
		s.mu.Unlock()
		return false
	}
	return true
}

// startRun runs s.run, counted in the node's lifecycle, on a parked
// worker or a new goroutine (idleworker.go); false once the node stops.
func (ps *pubsub) startRun(s *Subscription) bool {
	if !ps.life.enter() {
		return false
	}
	ps.workers.start(ps.life, s.run)
	return true
}

// run hands queued messages to the handler one at a time, in order, and
// returns when none is left.
func (s *Subscription) run() {
	for {
		s.mu.Lock()
		if s.head == len(s.q) {
			s.q, s.head = s.q[:0], 0
			s.running = false
			s.mu.Unlock()
			return
		}
		m := s.q[s.head]
		s.q[s.head] = nil
		s.head++
		s.bytes -= len(m.Payload)
		if s.head > 1024 && s.head*2 > len(s.q) {
			s.q = append(s.q[:0], s.q[s.head:]...)
			s.head = 0
		}
		s.mu.Unlock()
		s.delivered.Add(1)
		s.ps.delivered.Add(1)
		_, err := s.ps.b.protect(0, func() ([]byte, error) { s.h(m); return nil, nil })
		if r := m.reply; r != nil {
			r.mu.Lock()
			r.done = true
			set, data := r.set, r.data
			r.mu.Unlock()
			switch {
			case err != nil:
				s.ps.answer(r, topicFailed, []byte(err.Error()))
			case set:
				s.ps.answer(r, topicTaken, data)
			default:
				s.ps.answer(r, topicNoReply, nil)
			}
		}
	}
}
