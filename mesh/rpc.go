package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// DefaultRPCTimeout is the deadline SendRPC and SendRequest give a request.
const DefaultRPCTimeout = 3 * time.Second

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
	if n.life.closed.Load() {
		return nil, sendErr(addr, ErrClosed)
	}
	to, err := resolve(addr)
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
			return nil, timeoutErr(cmd, addr, context.DeadlineExceeded)
		}
		timeoutMs = uint32(min(max(left.Milliseconds(), 1), math.MaxUint32))
	}
	id := n.calls.newID()
	var watch time.Time // the sweeper's deadline
	if watched {
		watch = deadline
	}
	c := n.calls.add(id, to, addr, cmd, watch, done == nil)
	if c.w != nil && n.life.closed.Load() {
		// Shutdown may have failed the calls before this one joined.
		n.calls.releaseIfDropped(id, c)
		return nil, sendErr(addr, ErrClosed)
	}

	var hdr [requestHeaderSize]byte
	appendRequestHeader(hdr[:0], id, table, cmd, timeoutMs)
	if to == n.self {
		n.dispatchRequest(to, hdr[:], data, true)
	} else if err := n.sendRequest(ctx, to, hdr[:], data, deadline); err != nil {
		n.calls.releaseIfDropped(id, c)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return nil, timeoutErr(cmd, addr, fmt.Errorf("waiting for room in the queue to the node: %w", err))
		case errors.Is(err, context.Canceled) && ctx != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("%w: command %d to %s: %w", ErrRequest, cmd, addr, err)
		}
		n.ev.sendFailed(addr, err)
		return nil, sendErr(addr, err)
	}
	if c.w != nil {
		r := c.wait()
		resp, err := n.calls.result(c, r)
		callPool.Put(c)
		return resp, err
	}
	select {
	case r := <-c.ch:
		resp, err := n.calls.result(c, r)
		callPool.Put(c)
		return resp, err
	case <-done:
		n.calls.releaseIfDropped(id, c)
		if to != n.self {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], id)
			n.tr.SendMsg(context.Background(), to, kindCancel, nil, b[:], rudp.SendOptions{NoWait: true}) // best effort
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: command %d to %s: %w", ErrRequest, cmd, addr, ctx.Err())
		}
		return nil, n.calls.expired(to, cmd, addr, ctx.Err())
	case <-n.life.done:
		n.calls.releaseIfDropped(id, c)
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

// dispatchRequest starts serving one request (on the read goroutine: it
// must not block).
func (n *Node) dispatchRequest(from netip.AddrPort, p []byte, data []byte, reliable bool) {
	n.serveRequest(from, p, data, reliable, false)
}

// serveRequest is dispatchRequest; inline: on a goroutine that may block
// (inline.go), where the handler may run at once.
func (n *Node) serveRequest(from netip.AddrPort, p []byte, data []byte, reliable, inline bool) {
	hdr, body, err := parseRequest(p)
	if err != nil {
		n.bad("malformed request", from)
		return
	}
	if data != nil {
		body = data // a local call: header and body are separate
	}
	if hdr.table != tableInternal && n.strict.drop(from) {
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
	if inline {
		n.submitInline(from, len(body), j)
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
	sender := n.names.name(j.from)
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
		ctx, cancel = context.WithCancel(n.life.ctx)
	} else {
		ctx, cancel = context.WithDeadline(n.life.ctx, j.deadline)
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
		n.calls.handleResponse(to, append(hdr[:], payload...))
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
		n.calls.handleResponse(to, append(hdr[:], payload...))
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
	if !n.life.start(f) {
		go f()
	}
}
