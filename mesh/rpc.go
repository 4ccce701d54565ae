package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/internal/pollwake"
	"github.com/marsmesh/marsmesh/rudp"
)

// DefaultRPCTimeout is the deadline SendRPC and SendRequest give a request.
const DefaultRPCTimeout = 3 * time.Second

type call struct {
	to       netip.AddrPort
	addr     string
	cmd      uint16
	deadline int64           // node clock ns, watched by the sweeper; 0 if a context watches it
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

type serveKey struct {
	from netip.AddrPort
	id   uint64
}

// HandleRPC adds a handler SendRPC reaches with command ID cmd. Several
// handlers of one ID run in registration order until one returns a
// non-nil response or an error, which answers. It returns true.
func (n *Node) HandleRPC(cmd uint16, h func(data []byte, senderAddr string) ([]byte, error)) bool {
	return n.handlers.addRPC(cmd, rpcHandler{plain: h})
}

// HandleRPCWithContext is HandleRPC for a handler that takes a context: it
// is cancelled when the caller's deadline passes, the caller cancels, or
// the node shuts down.
func (n *Node) HandleRPCWithContext(cmd uint16, h func(ctx context.Context, data []byte, senderAddr string) ([]byte, error)) bool {
	return n.handlers.addRPC(cmd, rpcHandler{ctx: h})
}

// SendRPC is SendRPCWithContext with DefaultRPCTimeout.
func (n *Node) SendRPC(cmd uint16, addr string, data []byte) ([]byte, error) {
	if !n.IsPartOfCluster() {
		return nil, fmt.Errorf("%w: RPC %d to %s refused", ErrUnhealthy, cmd, addr)
	}
	return n.request(context.Background(), time.Now().Add(DefaultRPCTimeout), tableRPC, cmd, addr, data)
}

// SendRPCWithContext sends data to the HandleRPC handler of cmd on the
// node at addr and returns its response. The context's deadline travels
// with the request; cancelling ctx returns at once (the handler's context
// is cancelled too). Errors: IsRequestError (the handler failed, with its
// message, or no handler), IsRequestTimeoutError, IsSendError (bad
// address, too large, unreachable or dead node), IsUnhealthyError (this
// node is not part of the cluster).
func (n *Node) SendRPCWithContext(ctx context.Context, cmd uint16, addr string, data []byte) ([]byte, error) {
	if !n.IsPartOfCluster() {
		return nil, fmt.Errorf("%w: RPC %d to %s refused", ErrUnhealthy, cmd, addr)
	}
	return n.request(ctx, time.Time{}, tableRPC, cmd, addr, data)
}

// HealthCheck asks the node at addr whether it is serving, with no MARS
// involved (it works from guests and before the first sync).
func (n *Node) HealthCheck(ctx context.Context, addr string) error {
	_, err := n.request(ctx, time.Time{}, tableInternal, internalHealth, addr, nil)
	return err
}

// request sends one request and waits for its response, until ctx is
// done (if ctx is not nil) or the deadline passes (if not zero).
func (n *Node) request(ctx context.Context, deadline time.Time, table byte, cmd uint16, addr string, data []byte) (_ []byte, err error) {
	defer n.metrics.rpcDone(table, cmd, time.Now(), &err)
	if n.closed.Load() {
		return nil, sendErr(addr, ErrClosed)
	}
	to, err := n.resolve(addr)
	if err != nil {
		return nil, sendErr(addr, err)
	}
	if len(data) > MaxMessageSize {
		return nil, sendErr(addr, fmt.Errorf("%w: %d bytes, limit %d", rudp.ErrTooLarge, len(data), MaxMessageSize))
	}
	var done <-chan struct{}
	watched := !deadline.IsZero() // by the sweeper
	if ctx != nil {
		done = ctx.Done()
		if dl, ok := ctx.Deadline(); ok && (deadline.IsZero() || dl.Before(deadline)) {
			deadline, watched = dl, false
		}
	}
	var timeoutMs uint32
	if !deadline.IsZero() {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, n.timeoutErr(cmd, addr, context.DeadlineExceeded)
		}
		timeoutMs = uint32(min(max(left.Milliseconds(), 1), math.MaxUint32))
	}
	id := n.nextID.Add(1)
	c := callPool.Get().(*call)
	c.to, c.addr, c.cmd, c.deadline, c.w = to, addr, cmd, 0, nil
	if watched {
		c.deadline = max(int64(deadline.Sub(n.epoch)), 1) // monotonic
	}
	n.addCall(id, c, done == nil)
	if watched {
		n.watchDeadlines()
	}
	if c.w != nil && n.closed.Load() {
		// Shutdown may have failed the calls before this one joined.
		n.releaseIfDropped(id, c)
		return nil, sendErr(addr, ErrClosed)
	}

	var hdr [requestHeaderSize]byte
	appendRequestHeader(hdr[:0], id, table, cmd, timeoutMs)
	if to == n.self {
		n.dispatchRequest(to, hdr[:], data, true)
	} else if err := n.sendRequest(ctx, to, hdr[:], data, deadline); err != nil {
		n.releaseIfDropped(id, c)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return nil, n.timeoutErr(cmd, addr, fmt.Errorf("waiting for room in the queue to the node: %w", err))
		case errors.Is(err, context.Canceled) && ctx != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("%w: command %d to %s: %w", ErrRequest, cmd, addr, err)
		}
		n.sendFailed(addr, err)
		return nil, sendErr(addr, err)
	}
	if c.w != nil {
		r := c.wait()
		resp, err := n.result(c, r)
		callPool.Put(c)
		return resp, err
	}
	select {
	case r := <-c.ch:
		resp, err := n.result(c, r)
		callPool.Put(c)
		return resp, err
	case <-done:
		n.releaseIfDropped(id, c)
		if to != n.self {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], id)
			n.tr.SendMsg(context.Background(), to, kindCancel, nil, b[:], rudp.SendOptions{NoWait: true}) // best effort
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: command %d to %s: %w", ErrRequest, cmd, addr, ctx.Err())
		}
		return nil, n.expired(to, cmd, addr, ctx.Err())
	case <-n.done:
		n.releaseIfDropped(id, c)
		return nil, sendErr(addr, ErrClosed)
	}
}

// sendRequest sends a request; a full queue to the peer is waited on
// until ctx ends, the deadline passes or Shutdown.
func (n *Node) sendRequest(ctx context.Context, to netip.AddrPort, hdr, data []byte, deadline time.Time) error {
	if ctx == nil || ctx.Done() == nil { // no context, or one that never ends (SendRPC's Background)
		return n.sendBounded(to, kindRequest, hdr, data, rudp.SendOptions{}, deadline)
	}
	return n.tr.SendMsg(ctx, to, kindRequest, hdr, data, rudp.SendOptions{}) // wraps ctx.Err() if it ends
}

// expired is the error of a call whose deadline passed: a timeout, unless
// the node never answered the handshake (unreachable, not slow).
func (n *Node) expired(to netip.AddrPort, cmd uint16, addr string, cause error) error {
	if st, ok := n.tr.Peer(to); to != n.self && (!ok || !st.Established) {
		return sendErr(addr, rudp.ErrUnreachable)
	}
	return n.timeoutErr(cmd, addr, cause)
}

// releaseIfDropped takes a call out of the table; if it was still there,
// no result can come any more and the call is reused.
func (n *Node) releaseIfDropped(id uint64, c *call) {
	n.callMu.Lock()
	_, ok := n.calls[id]
	delete(n.calls, id)
	n.callMu.Unlock()
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
func (n *Node) watchDeadlines() {
	select {
	case n.sweepWake <- struct{}{}:
	default:
	}
}

// sweepLoop fails calls whose deadline passed, every sweepEvery while
// there are any, and sleeps otherwise.
func (n *Node) sweepLoop() {
	defer n.bg.Done()
	t := time.NewTimer(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			n.failAllCalls(ErrClosed) // callers waiting on a waker see no n.done
			n.closeIdleWorkers()
			return
		case <-n.sweepWake:
		}
		for {
			t.Reset(sweepEvery)
			select {
			case <-n.done:
				n.failAllCalls(ErrClosed)
				n.closeIdleWorkers()
				return
			case <-t.C:
			}
			if n.sweep(n.clock()) == 0 {
				break
			}
		}
	}
}

// sweep fails the calls past their deadline and returns how many watched
// calls are left.
func (n *Node) sweep(now int64) int {
	var late []*call
	left := 0
	n.callMu.Lock()
	for id, c := range n.calls {
		switch {
		case c.deadline == 0:
		case c.deadline <= now:
			late = append(late, c)
			delete(n.calls, id)
		default:
			left++
		}
	}
	n.callMu.Unlock()
	for _, c := range late {
		c.deliver(callResult{expired: true})
	}
	return left
}

func (n *Node) timeoutErr(cmd uint16, addr string, cause error) error {
	return fmt.Errorf("%w: command %d to %s: %w", ErrRequestTimeout, cmd, addr, cause)
}

func (n *Node) result(c *call, r callResult) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.expired {
		return nil, n.expired(c.to, c.cmd, c.addr, context.DeadlineExceeded)
	}
	switch r.status {
	case statusOK:
		return r.payload, nil
	case statusError:
		return nil, &RemoteError{Addr: c.addr, Cmd: c.cmd, Message: string(r.payload)}
	case statusExpired:
		return nil, n.timeoutErr(c.cmd, c.addr, fmt.Errorf("on the remote node: %w", context.DeadlineExceeded))
	default:
		return nil, fmt.Errorf("%w: command %d on %s: %s", ErrRequest, c.cmd, c.addr, r.payload)
	}
}

// failCalls fails every call waiting on addr; it reports whether there was any.
func (n *Node) failCalls(addr netip.AddrPort, cause error) bool {
	var failed []*call
	n.callMu.Lock()
	for id, c := range n.calls {
		if c.to == addr {
			failed = append(failed, c)
			delete(n.calls, id)
		}
	}
	n.callMu.Unlock()
	for _, c := range failed {
		c.deliver(callResult{err: sendErr(c.addr, cause)})
	}
	return len(failed) > 0
}

func (n *Node) failAllCalls(cause error) {
	n.callMu.Lock()
	calls := n.calls
	n.calls = make(map[uint64]*call)
	n.callMu.Unlock()
	for _, c := range calls {
		c.deliver(callResult{err: sendErr(c.addr, cause)})
	}
}

// handleResponse matches a response to its call (from the node it was sent to).
func (n *Node) handleResponse(from netip.AddrPort, p []byte) {
	if len(p) < responseHeaderSize {
		n.bad("short response", from)
		return
	}
	id := binary.BigEndian.Uint64(p)
	n.callMu.Lock()
	c := n.calls[id]
	if c != nil && c.to == from {
		delete(n.calls, id)
	} else {
		c = nil
	}
	n.callMu.Unlock()
	if c != nil {
		c.deliver(callResult{status: p[8], payload: p[responseHeaderSize:]})
	}
}

// dispatchRequest starts serving one request (on the read goroutine: it
// must not block).
func (n *Node) dispatchRequest(from netip.AddrPort, p []byte, data []byte, reliable bool) {
	n.serveRequest(from, p, data, reliable, nil)
}

// serveRequest is dispatchRequest; with inline, on a goroutine that may
// block (inline.go), where the handler may run next: *inline is set to it.
func (n *Node) serveRequest(from netip.AddrPort, p []byte, data []byte, reliable bool, inline *func()) {
	hdr, body, err := parseRequest(p)
	if err != nil {
		n.bad("malformed request", from)
		return
	}
	if data != nil {
		body = data // a local call: header and body are separate
	}
	if hdr.table != tableInternal && n.strictDrop(from) {
		return
	}
	j := &serveJob{n: n, from: from, hdr: hdr, body: body}
	ok := false
	switch hdr.table {
	case tableRPC:
		j.rpc, ok = n.handlers.getRPC(hdr.cmd)
	case tableCommand:
		j.cmd, ok = n.handlers.getCmd(hdr.cmd)
	case tableInternal:
		ok = hdr.cmd == internalHealth
	}
	if hdr.timeoutMs > 0 {
		j.deadline = time.Now().Add(time.Duration(hdr.timeoutMs) * time.Millisecond)
	}
	if !ok {
		n.respondSoon(from, hdr.id, statusNoHandler, []byte(fmt.Sprintf("no handler for command %d", hdr.cmd)), j.deadline)
		return
	}
	if inline != nil {
		*inline = n.submitInline(from, len(body), j)
		return
	}
	n.submit(from, len(body), reliable, j)
}

// refuse answers a request the node will not serve: it is shutting down.
func (j *serveJob) refuse() {
	j.n.respondSoon(j.from, j.hdr.id, statusError, []byte("node is shutting down"), j.deadline)
}

// serveJob is one request being served.
type serveJob struct {
	n        *Node
	from     netip.AddrPort
	hdr      requestHeader
	body     []byte
	deadline time.Time // zero: the caller set none
	rpc      rpcHandler
	cmd      cmdHandler
}

func (j *serveJob) run() {
	n := j.n
	if !j.deadline.IsZero() && !time.Now().Before(j.deadline) {
		n.respond(j.from, j.hdr.id, statusExpired, nil, j.deadline)
		return
	}
	sender := n.name(j.from)
	var resp []byte
	var err, ctxErr error
	switch {
	case j.rpc.ctx != nil:
		// Only context-aware handlers get a context, with the caller's
		// deadline, cancelled by its cancel message or by Shutdown.
		resp, err, ctxErr = j.runWithContext(sender)
	case j.rpc.plain != nil:
		resp, err = n.protect(j.hdr.cmd, func() ([]byte, error) { return j.rpc.plain(j.body, sender) })
	case j.cmd.raw != nil || j.cmd.decoded != nil || j.cmd.chain != nil:
		resp, err = n.protect(j.hdr.cmd, func() ([]byte, error) { return j.cmd.callRequest(j.body, sender) })
	case j.hdr.table == tableInternal:
		resp = n.healthAnswer() // the node's sync state (ready.go)
	}
	// The handler returned: this worker only answers now, and is about to
	// take the next job or park (startWorkerLocked).
	n.in.replying.Add(1)
	defer n.in.replying.Add(-1)
	switch {
	case err != nil && errors.Is(ctxErr, context.DeadlineExceeded):
		// The caller's deadline passed: a timeout for the caller, not a
		// handler error (the handler most likely returned ctx.Err()).
		n.respond(j.from, j.hdr.id, statusExpired, nil, j.deadline)
	case err != nil:
		n.respond(j.from, j.hdr.id, statusError, []byte(err.Error()), j.deadline)
	case len(resp) > MaxMessageSize:
		n.respond(j.from, j.hdr.id, statusTooLarge, []byte(fmt.Sprintf("response of %d bytes exceeds %d", len(resp), MaxMessageSize)), j.deadline)
	default:
		n.respond(j.from, j.hdr.id, statusOK, resp, j.deadline)
	}
}

func (j *serveJob) runWithContext(sender string) (resp []byte, err, ctxErr error) {
	n := j.n
	var ctx context.Context
	var cancel context.CancelFunc
	if j.deadline.IsZero() {
		ctx, cancel = context.WithCancel(n.ctx)
	} else {
		ctx, cancel = context.WithDeadline(n.ctx, j.deadline)
	}
	key := serveKey{j.from, j.hdr.id}
	n.serveMu.Lock()
	n.serving[key] = cancel
	n.serveMu.Unlock()
	defer func() {
		n.serveMu.Lock()
		delete(n.serving, key)
		n.serveMu.Unlock()
		cancel()
	}()
	resp, err = n.protect(j.hdr.cmd, func() ([]byte, error) { return j.rpc.ctx(ctx, j.body, sender) })
	return resp, err, ctx.Err()
}

// protect runs a handler, turning a panic into an error for the caller.
func (n *Node) protect(cmd uint16, f func() ([]byte, error)) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("mesh: handler panicked", "cmd", cmd, "panic", r)
			resp, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return f()
}

// respond sends a handler's response; a full queue to the caller is
// waited on until the request's deadline (zero: none) or Shutdown.
func (n *Node) respond(to netip.AddrPort, id uint64, status byte, payload []byte, deadline time.Time) {
	hdr := responseHeader(id, status)
	if to == n.self {
		n.handleResponse(to, append(hdr[:], payload...))
		return
	}
	if err := n.sendBounded(to, kindResponse, hdr[:], payload, rudp.SendOptions{}, deadline); err != nil {
		n.log.Debug("mesh: response not sent", "to", to, "err", err)
	}
}

func responseHeader(id uint64, status byte) (hdr [responseHeaderSize]byte) {
	binary.BigEndian.PutUint64(hdr[:], id)
	hdr[8] = status
	return hdr
}

// respondSoon is respond for the read goroutine: it never waits.
func (n *Node) respondSoon(to netip.AddrPort, id uint64, status byte, payload []byte, deadline time.Time) {
	hdr := responseHeader(id, status)
	if to == n.self {
		n.handleResponse(to, append(hdr[:], payload...))
		return
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(DefaultRPCTimeout)
	}
	n.sendSoon(to, kindResponse, hdr[:], payload, rudp.SendOptions{}, deadline)
}

func (n *Node) handleCancel(from netip.AddrPort, p []byte) {
	if len(p) != 8 {
		n.bad("malformed cancel", from)
		return
	}
	n.serveMu.Lock()
	cancel := n.serving[serveKey{from, binary.BigEndian.Uint64(p)}]
	n.serveMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// SendRequest sends data (a map or a struct pointer, see ValidateDataType)
// to the command handler of cmd on the node at addr and calls callback with
// the handler's response decoded into a map, or an error (classified like
// SendRPC's). It returns at once; callback always runs on a goroutine of
// its own, also for errors found before sending (invalid data, unhealthy
// node), within DefaultRPCTimeout and before Shutdown returns.
func (n *Node) SendRequest(cmd uint16, addr string, data interface{}, callback func(err error, responseData map[string]interface{})) {
	if callback == nil {
		callback = func(error, map[string]interface{}) {}
	}
	fail := func(err error) { n.goCallback(func() { callback(err, nil) }) }
	if !ValidateDataType(data) {
		fail(sendErr(addr, fmt.Errorf("%w: %T (want a map[string]interface{} or a struct pointer)", ErrInvalidData, data)))
		return
	}
	payload, err := encodeData(data)
	if err != nil {
		fail(sendErr(addr, err))
		return
	}
	if !n.IsPartOfCluster() {
		fail(fmt.Errorf("%w: request %d to %s refused", ErrUnhealthy, cmd, addr))
		return
	}
	n.goCallback(func() {
		resp, err := n.request(context.Background(), time.Now().Add(DefaultRPCTimeout), tableCommand, cmd, addr, payload)
		if err != nil {
			callback(err, nil)
			return
		}
		m, err := decodeMap(resp)
		if err != nil {
			callback(fmt.Errorf("%w: response from %s: %w", ErrRequest, addr, err), nil)
			return
		}
		callback(nil, m)
	})
}

// goCallback runs f on a goroutine Shutdown waits for, or, once Shutdown
// has begun waiting, on a plain one (f then finds the node shut down).
func (n *Node) goCallback(f func()) {
	if !n.startHandler(f) {
		go f()
	}
}
