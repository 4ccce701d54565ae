package mesh

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/internal/pollwake"
	"github.com/marsmesh/marsmesh/rudp"
)

// callTable holds the requests this node sent and waits on (SendRPC,
// SendRequest, HealthCheck): their IDs, the calls by ID, and the sweeper
// goroutine that fails calls past their deadline. A call leaves the table
// exactly once: by its response, its deadline, its peer going down, its
// caller giving up, or the node stopping.
type callTable struct {
	b    *base
	done <-chan struct{} // the node stopped: fail every call

	nextID atomic.Uint64
	mu     sync.Mutex
	m      map[uint64]*call
	wake   chan struct{} // wakes the sweeper
	wg     sync.WaitGroup
}

type call struct {
	to       netip.AddrPort
	addr     string
	cmd      uint16
	deadline int64           // node clock ns, watched by the sweeper; 0 if a context watches it
	since    int64           // node clock ns when it was sent (probes, see sweep)
	ch       chan callResult // buffered: the one result never blocks its sender
	w        *pollwake.Waker // the caller waits on it, not on ch (rpcwait.go); may be nil
}

type callResult struct {
	status  byte
	payload []byte
	err     error // set when the call failed locally (peer down, shutdown)
	expired bool  // the sweeper found the deadline passed
}

// Calls are reused: a call goes back to the pool only once its one result
// has been received, or once it was taken out of the table by its caller
// (so nothing can send to it any more).
var callPool = sync.Pool{New: func() any { return &call{ch: make(chan callResult, 1)} }}

// sweepEvery is how often the sweeper looks for calls past their deadline
// (SendRPC and SendRequest use it instead of a timer per call).
const sweepEvery = 10 * time.Millisecond

// probeAfter: a peer with a call waiting longer gets a keepalive from
// the sweeper whenever its session sent nothing for as long (rudp Probe).
// If the peer crashed and restarted on its address, the new process
// answers with a handshake and the calls on the old one fail at once
// (a send error), within about probeAfter + sweepEvery of the restart,
// not at the session's next keepalive (up to RetryTimeout/4 away). A
// call waiting on a slow handler costs its peer one small packet each
// way per probeAfter.
const probeAfter = 50 * time.Millisecond

func newCallTable(b *base, done <-chan struct{}) *callTable {
	return &callTable{b: b, done: done, m: make(map[uint64]*call), wake: make(chan struct{}, 1)}
}

// start starts the sweeper; wait waits for it to end (after done).
func (t *callTable) start() {
	t.wg.Add(1)
	go t.sweepLoop()
}

func (t *callTable) wait() { t.wg.Wait() }

// newID returns a fresh request ID.
func (t *callTable) newID() uint64 { return t.nextID.Add(1) }

// expired is the error of a call whose deadline passed: a timeout, unless
// the node never answered the handshake (unreachable, not slow).
func (t *callTable) expired(to netip.AddrPort, cmd uint16, addr string, cause error) error {
	if st, ok := t.b.tr.Peer(to); to != t.b.self && (!ok || !st.Established) {
		return sendErr(addr, rudp.ErrUnreachable)
	}
	return timeoutErr(cmd, addr, cause)
}

// releaseIfDropped takes a call out of the table; if it was still there,
// no result can come any more and the call is reused.
func (t *callTable) releaseIfDropped(id uint64, c *call) {
	t.mu.Lock()
	_, ok := t.m[id]
	delete(t.m, id)
	t.mu.Unlock()
	switch {
	case ok:
		c.releaseWaker()
		callPool.Put(c)
	case c.w != nil:
		c.wait() // its result is on the way; the waker is reused after it
		callPool.Put(c)
	}
}

// watchDeadlines makes sure the sweeper runs.
func (t *callTable) watchDeadlines() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// sweepLoop fails calls whose deadline passed and probes the peers of
// calls that wait long, every sweepEvery while there are calls, and
// sleeps otherwise. When the node stops it fails every
// call (callers waiting on a waker do not watch done).
func (t *callTable) sweepLoop() {
	defer t.wg.Done()
	tm := time.NewTimer(sweepEvery)
	defer tm.Stop()
	for {
		select {
		case <-t.done:
			t.failAll(ErrClosed)
			return
		case <-t.wake:
		}
		for {
			tm.Reset(sweepEvery)
			select {
			case <-t.done:
				t.failAll(ErrClosed)
				return
			case <-tm.C:
			}
			if t.sweep(t.b.clock()) == 0 {
				break
			}
		}
	}
}

// sweep fails the calls past their deadline, probes the peers of calls
// waiting longer than probeAfter, and returns how many calls are left.
func (t *callTable) sweep(now int64) int {
	var late []*call
	var probe []netip.AddrPort
	left := 0
	t.mu.Lock()
	for id, c := range t.m {
		if c.deadline != 0 && c.deadline <= now {
			late = append(late, c)
			delete(t.m, id)
			continue
		}
		left++
		if now-c.since >= int64(probeAfter) && !slices.Contains(probe, c.to) && len(probe) < maxProbes {
			probe = append(probe, c.to)
		}
	}
	t.mu.Unlock()
	for _, c := range late {
		c.deliver(callResult{expired: true})
	}
	for _, to := range probe {
		t.b.tr.Probe(to, probeAfter)
	}
	return left
}

// maxProbes bounds the peers one sweep probes.
const maxProbes = 64

func timeoutErr(cmd uint16, addr string, cause error) error {
	return fmt.Errorf("%w: command %d to %s: %w", ErrRequestTimeout, cmd, addr, cause)
}

// result turns a call's result into what its caller returns.
func (t *callTable) result(c *call, r callResult) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.expired {
		return nil, t.expired(c.to, c.cmd, c.addr, context.DeadlineExceeded)
	}
	switch r.status {
	case statusOK:
		return r.payload, nil
	case statusError:
		return nil, &RemoteError{Addr: c.addr, Cmd: c.cmd, Message: string(r.payload)}
	case statusExpired:
		return nil, timeoutErr(c.cmd, c.addr, fmt.Errorf("on the remote node: %w", context.DeadlineExceeded))
	case statusDraining:
		return nil, drainingErr(c.cmd, c.addr)
	default:
		return nil, fmt.Errorf("%w: command %d on %s: %s", ErrRequest, c.cmd, c.addr, r.payload)
	}
}

// failPeer fails every call waiting on addr; it reports whether there was any.
func (t *callTable) failPeer(addr netip.AddrPort, cause error) bool {
	var failed []*call
	t.mu.Lock()
	for id, c := range t.m {
		if c.to == addr {
			failed = append(failed, c)
			delete(t.m, id)
		}
	}
	t.mu.Unlock()
	for _, c := range failed {
		c.deliver(callResult{err: sendErr(c.addr, cause)})
	}
	return len(failed) > 0
}

func (t *callTable) failAll(cause error) {
	t.mu.Lock()
	calls := t.m
	t.m = make(map[uint64]*call)
	t.mu.Unlock()
	for _, c := range calls {
		c.deliver(callResult{err: sendErr(c.addr, cause)})
	}
}

// handleResponse matches a response to its call (from the node it was sent to).
func (t *callTable) handleResponse(from netip.AddrPort, p []byte) {
	if len(p) < responseHeaderSize {
		t.b.bad("short response", from)
		return
	}
	id := binary.BigEndian.Uint64(p)
	t.mu.Lock()
	c := t.m[id]
	if c != nil && c.to == from {
		delete(t.m, id)
	} else {
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		c.deliver(callResult{status: p[8], payload: p[responseHeaderSize:]})
	}
}
