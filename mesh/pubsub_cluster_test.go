package mesh

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// topicLog keeps what a subscription's handler got.
type topicLog struct {
	mu   sync.Mutex
	msgs []*Message
}

func (r *topicLog) handle(m *Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *topicLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *topicLog) payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Payload)
	}
	return out
}

func TestPubsubCluster(t *testing.T) {
	c := newCluster(t, 3)
	pub, a, b := c.nodes[0], c.nodes[1], c.nodes[2]
	var wild, exact, local topicLog
	if _, err := a.Subscribe("chat.*.lobby", wild.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe("chat.eu.lobby", exact.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Subscribe("chat.>", local.handle); err != nil {
		t.Fatal(err)
	}
	const count = 200
	ctx := context.Background()
	for i := range count {
		if err := pub.Publish(ctx, "chat.eu.lobby", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, "chat.us.lobby", []byte("us")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "news.eu", []byte("nobody")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		return wild.count() == count+1 && exact.count() == count && local.count() == count+1
	}, "every subscription has its messages (%d %d %d)", wild.count(), exact.count(), local.count())
	for name, r := range map[string]*topicLog{"wild": &wild, "exact": &exact, "local": &local} {
		got := r.payloads()
		for i := range count {
			if got[i] != strconv.Itoa(i) {
				t.Fatalf("%s: message %d is %q: out of order or duplicated", name, i, got[i])
			}
		}
	}
	if exact.msgs[0].From != pub.Addr || exact.msgs[0].Topic != "chat.eu.lobby" {
		t.Errorf("message from %q topic %q", exact.msgs[0].From, exact.msgs[0].Topic)
	}
}

func TestPubsubQueueGroupAndRequest(t *testing.T) {
	c := newCluster(t, 3)
	pub := c.nodes[0]
	recs := make([]*topicLog, 3)
	for i, n := range c.nodes {
		recs[i] = new(topicLog)
		r := recs[i]
		if _, err := n.QueueSubscribe("jobs.>", "workers", func(m *Message) {
			r.handle(m)
			if m.IsRequest() {
				if err := m.Respond([]byte(n.Addr + ":" + string(m.Payload))); err != nil {
					t.Error(err)
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	const count = 300
	ctx := context.Background()
	for i := range count {
		if err := pub.Publish(ctx, "jobs.build", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	total := func() int { return recs[0].count() + recs[1].count() + recs[2].count() }
	eventually(t, 10*time.Second, func() bool { return total() >= count }, "the group has every message")
	seen := make(map[string]bool)
	for i, r := range recs {
		if r.count() < count/6 {
			t.Errorf("member %d got %d of %d: not spread", i, r.count(), count)
		}
		for _, p := range r.payloads() {
			if seen[p] {
				t.Fatalf("message %s handled twice", p)
			}
			seen[p] = true
		}
	}
	if total() != count {
		t.Fatalf("%d handled, want %d", total(), count)
	}
	answered := make(map[string]int)
	for i := range 30 {
		resp, err := pub.Request(ctx, "jobs.ask", []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		answered[string(resp[:len(resp)-len(fmt.Sprint(i))-1])]++
	}
	if len(answered) != 3 {
		t.Errorf("requests answered by %v, want all three nodes", answered)
	}
	if _, err := pub.Request(ctx, "nobody.here", nil); !errors.Is(err, ErrNoSubscribers) || !IsSendError(err) {
		t.Errorf("request to no subscriber: %v", err)
	}
}

func TestPubsubUnsubscribeAndDrain(t *testing.T) {
	c := newCluster(t, 3)
	pub, a, b := c.nodes[0], c.nodes[1], c.nodes[2]
	var ra, rb topicLog
	sa, err := a.Subscribe("t.>", ra.handle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.QueueSubscribe("t.*", "g", rb.handle); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pub.Publish(ctx, "t.x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return ra.count() == 1 && rb.count() == 1 }, "first message")
	if err := sa.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	// Unsubscribe was acknowledged: the publisher sends a no more.
	if err := pub.Publish(ctx, "t.x", []byte("2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return rb.count() == 2 }, "second message in the group")
	if r := pub.ps.routes(pub.mc.View()).lookup("t.x"); len(r.plain) != 0 {
		t.Errorf("publisher still routes to %v", r.plain)
	}
	// b drains: the group has no member left, and nothing reaches b.
	done := make(chan struct{})
	go func() { b.Shutdown(); close(done) }()
	eventually(t, 5*time.Second, func() bool { return pub.NodeState(b.Addr) != StateOnline }, "the publisher sees b drain")
	// The group's only member drains: nobody subscribes now, not an error.
	if err := pub.Publish(ctx, "t.x", []byte("3")); err != nil {
		t.Errorf("publish to a group whose only member drains: %v", err)
	}
	<-done
	if rb.count() != 2 || ra.count() != 1 {
		t.Errorf("after drain: a %d b %d", ra.count(), rb.count())
	}
}

func TestPubsubNewcomerLearnsInterest(t *testing.T) {
	c := newCluster(t, 2)
	var r topicLog
	if _, err := c.nodes[1].Subscribe("room.*", r.handle); err != nil {
		t.Fatal(err)
	}
	late := c.add()
	c.waitListed(3)
	// The newcomer learns the interest from MARS within the sync bound.
	eventually(t, 10*time.Second, func() bool {
		return len(late.ps.routes(late.mc.View()).lookup("room.1").plain) == 1
	}, "the newcomer routes room.1")
	if err := late.Publish(context.Background(), "room.1", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return r.count() == 1 }, "delivery from the newcomer")
}

func TestPubsubSlowSubscriber(t *testing.T) {
	c := newCluster(t, 2)
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	var got topicLog
	s, err := c.nodes[1].Subscribe("slow", func(m *Message) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		got.handle(m)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.SetPendingLimits(10, 0)
	if err := c.nodes[0].Publish(context.Background(), "slow", []byte{0}); err != nil {
		t.Fatal(err)
	}
	<-entered
	for i := 1; i < 50; i++ {
		if err := c.nodes[0].Publish(context.Background(), "slow", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The handler holds one message and ten wait: the rest are dropped.
	eventually(t, 5*time.Second, func() bool { return s.Dropped() == 39 }, "39 dropped (%d)", s.Dropped())
	close(release)
	eventually(t, 5*time.Second, func() bool { return got.count() == 11 }, "11 handled")
	if st := c.nodes[1].TopicStats(); st.SlowConsumers != 1 || st.Dropped != 39 {
		t.Errorf("stats: %+v", st)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.nodes[1].Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "marsmesh_topic_dropped_total" {
			m := mf.GetMetric()
			found = len(m) == 1 && m[0].GetCounter().GetValue() == 39 && m[0].GetLabel()[1].GetValue() == "slow"
		}
	}
	if !found {
		t.Error("marsmesh_topic_dropped_total{pattern=\"slow\"} is not 39")
	}
}

func TestPubsubRequestReplies(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	if _, err := b.Subscribe("svc.panic", func(*Message) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe("svc.silent", func(m *Message) {}); err != nil {
		t.Fatal(err)
	}
	late := make(chan *Message, 1)
	if _, err := b.Subscribe("svc.twice", func(m *Message) {
		if err := m.Respond([]byte("one")); err != nil {
			t.Error(err)
		}
		if err := m.Respond([]byte("two")); !errors.Is(err, ErrNoReply) {
			t.Errorf("second Respond: %v", err)
		}
		late <- m
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var re *RemoteError
	if _, err := a.Request(ctx, "svc.panic", nil); !errors.As(err, &re) || !IsRequestError(err) {
		t.Errorf("a panicking handler: %v", err)
	}
	if resp, err := a.Request(ctx, "svc.silent", []byte("x")); err != nil || resp != nil {
		t.Errorf("a handler that sets no reply: %q %v", resp, err)
	}
	if resp, err := a.Request(ctx, "svc.twice", nil); err != nil || string(resp) != "one" {
		t.Errorf("first reply: %q %v", resp, err)
	}
	if err := (<-late).Respond([]byte("late")); !errors.Is(err, ErrNoReply) {
		t.Errorf("Respond after the handler returned: %v", err)
	}
	// A plain publish takes no reply.
	got := make(chan error, 1)
	if _, err := b.Subscribe("plain", func(m *Message) { got <- m.Respond(nil) }); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, "plain", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrNoReply) {
		t.Errorf("Respond to a publish: %v", err)
	}
	// Bad input.
	if err := a.Publish(ctx, "a.*", nil); !errors.Is(err, ErrBadTopic) {
		t.Errorf("Publish to a pattern: %v", err)
	}
	if _, err := a.Subscribe("a..b", func(*Message) {}); !errors.Is(err, ErrBadTopic) {
		t.Errorf("Subscribe to a bad pattern: %v", err)
	}
	if _, err := a.QueueSubscribe("a.b", "", func(*Message) {}); !errors.Is(err, ErrBadTopic) {
		t.Errorf("QueueSubscribe with no group: %v", err)
	}
	if _, err := a.Request(ctx, "a.>", nil); !errors.Is(err, ErrBadTopic) {
		t.Errorf("Request to a pattern: %v", err)
	}
}
