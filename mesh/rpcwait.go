package mesh

import (
	"net/netip"
	"time"

	"github.com/marsmesh/marsmesh/internal/pollwake"
)

// How a caller waits for its response.
//
// Handing a result to a caller parked on a channel makes the Go runtime
// wake a second OS thread whenever a processor is idle: at one call at a
// time that is a futex wake-up (an interprocessor interrupt on a VM) on
// the response's path, paid by the read goroutine before it can let the
// caller run. A call that is the node's only one, and that no context
// watches, waits on a pollwake.Waker instead: the read goroutine writes an
// eventfd, and the caller is found by the read goroutine's own thread when
// it next looks for work. Calls that overlap others use the channel: when
// the node is busy the runtime has threads awake anyway.
//
// Every result still travels through c.ch (buffered, so the send never
// blocks); the waker only says that it is there. Results come from the
// response, the deadline sweeper, a peer going down or shutdown (the
// sweeper fails every call when the node stops, since a caller on a waker
// does not watch n.life.done).

// add registers a call to addr as id and returns it and makes sure the
// sweeper runs (it probes the peers of calls that wait long); a non-zero
// deadline is watched by the sweeper. A call alone in the table with no context to
// watch (noCtx) gets a waker if one is free.
func (t *callTable) add(id uint64, to netip.AddrPort, addr string, cmd uint16, deadline time.Time, noCtx bool) *call {
	c := callPool.Get().(*call)
	c.to, c.addr, c.cmd, c.deadline, c.w = to, addr, cmd, 0, nil
	c.since = t.b.clock()
	if !deadline.IsZero() {
		c.deadline = max(int64(deadline.Sub(t.b.epoch)), 1) // monotonic
	}
	t.mu.Lock()
	if noCtx && len(t.m) == 0 {
		c.w = pollwake.Get()
	}
	t.m[id] = c
	t.mu.Unlock()
	t.watchDeadlines()
	return c
}

// deliver hands c its one result.
func (c *call) deliver(r callResult) {
	w := c.w // read first: after the send a caller on the channel may reuse c
	c.ch <- r
	if w != nil {
		w.Wake()
	}
}

// wait receives the result of a call with a waker and frees the waker.
func (c *call) wait() callResult {
	c.w.Wait()
	r := <-c.ch
	c.releaseWaker()
	return r
}

// releaseWaker returns c's waker (no Wake pending on it) to the pool.
func (c *call) releaseWaker() {
	if c.w != nil {
		pollwake.Put(c.w)
		c.w = nil
	}
}
