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

type call struct {
	to   netip.AddrPort
	addr string
	cmd  uint16
	ch   chan callResult // buffered: the one result never blocks its sender
}

type callResult struct {
	status  byte
	payload []byte
	err     error // set when the call failed locally (peer down, shutdown)
}

type serveKey struct {
	from netip.AddrPort
	id   uint64
}

// HandleRPC sets the handler SendRPC reaches with command ID cmd. It
// returns false, keeping the first handler, if cmd already has one.
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
	ctx, cancel := context.WithTimeout(context.Background(), DefaultRPCTimeout)
	defer cancel()
	return n.SendRPCWithContext(ctx, cmd, addr, data)
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
	return n.request(ctx, tableRPC, cmd, addr, data)
}

// HealthCheck asks the node at addr whether it is serving, with no MARS
// involved (it works from guests and before the first sync).
func (n *Node) HealthCheck(ctx context.Context, addr string) error {
	_, err := n.request(ctx, tableInternal, internalHealth, addr, nil)
	return err
}

func (n *Node) request(ctx context.Context, table byte, cmd uint16, addr string, data []byte) ([]byte, error) {
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
	var timeoutMs uint32
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, n.timeoutErr(cmd, addr, context.DeadlineExceeded)
		}
		timeoutMs = uint32(min(max(left.Milliseconds(), 1), math.MaxUint32))
	}
	id := n.nextID.Add(1)
	c := &call{to: to, addr: addr, cmd: cmd, ch: make(chan callResult, 1)}
	n.callMu.Lock()
	n.calls[id] = c
	n.callMu.Unlock()

	var hdr [requestHeaderSize]byte
	appendRequestHeader(hdr[:0], id, table, cmd, timeoutMs)
	if to == n.self {
		n.dispatchRequest(to, hdr[:], data)
	} else if err := n.tr.SendWithHeader(to, kindRequest, hdr[:], data); err != nil {
		n.dropCall(id)
		n.sendFailed(addr, err)
		return nil, sendErr(addr, err)
	}
	select {
	case r := <-c.ch:
		return n.result(c, r)
	case <-ctx.Done():
		n.dropCall(id)
		if to != n.self {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], id)
			n.tr.Send(to, kindCancel, b[:])
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: command %d to %s: %w", ErrRequest, cmd, addr, ctx.Err())
		}
		if st, ok := n.tr.Peer(to); to != n.self && (!ok || !st.Established) {
			// The node never answered the handshake: unreachable, not slow.
			return nil, sendErr(addr, rudp.ErrUnreachable)
		}
		return nil, n.timeoutErr(cmd, addr, ctx.Err())
	case <-n.done:
		n.dropCall(id)
		return nil, sendErr(addr, ErrClosed)
	}
}

func (n *Node) timeoutErr(cmd uint16, addr string, cause error) error {
	return fmt.Errorf("%w: command %d to %s: %w", ErrRequestTimeout, cmd, addr, cause)
}

func (n *Node) result(c *call, r callResult) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
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

func (n *Node) dropCall(id uint64) {
	n.callMu.Lock()
	delete(n.calls, id)
	n.callMu.Unlock()
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
		c.ch <- callResult{err: sendErr(c.addr, cause)}
	}
	return len(failed) > 0
}

func (n *Node) failAllCalls(cause error) {
	n.callMu.Lock()
	calls := n.calls
	n.calls = make(map[uint64]*call)
	n.callMu.Unlock()
	for _, c := range calls {
		c.ch <- callResult{err: sendErr(c.addr, cause)}
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
		c.ch <- callResult{status: p[8], payload: p[responseHeaderSize:]}
	}
}

// dispatchRequest starts serving one request (on the read goroutine: it
// must not block).
func (n *Node) dispatchRequest(from netip.AddrPort, p []byte, data []byte) {
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
	var run func(ctx context.Context, sender string) ([]byte, error)
	switch hdr.table {
	case tableRPC:
		h, ok := n.handlers.getRPC(hdr.cmd)
		if ok && h.ctx != nil {
			run = func(ctx context.Context, s string) ([]byte, error) { return h.ctx(ctx, body, s) }
		} else if ok {
			run = func(_ context.Context, s string) ([]byte, error) { return h.plain(body, s) }
		}
	case tableCommand:
		if h, ok := n.handlers.getCmd(hdr.cmd); ok {
			run = func(_ context.Context, s string) ([]byte, error) { return h.call(body, s) }
		}
	case tableInternal:
		if hdr.cmd == internalHealth {
			run = func(context.Context, string) ([]byte, error) { return nil, nil }
		}
	}
	if run == nil {
		n.respond(from, hdr.id, statusNoHandler, []byte(fmt.Sprintf("no handler for command %d", hdr.cmd)))
		return
	}
	if !n.startHandler(func() { n.serve(from, hdr, run) }) {
		n.respond(from, hdr.id, statusError, []byte("node is shutting down"))
	}
}

func (n *Node) serve(from netip.AddrPort, hdr requestHeader, run func(context.Context, string) ([]byte, error)) {
	ctx, cancel := n.handlerContext(hdr.timeoutMs)
	key := serveKey{from, hdr.id}
	n.serveMu.Lock()
	n.serving[key] = cancel
	n.serveMu.Unlock()
	defer func() {
		n.serveMu.Lock()
		delete(n.serving, key)
		n.serveMu.Unlock()
		cancel()
	}()
	if ctx.Err() != nil {
		n.respond(from, hdr.id, statusExpired, nil)
		return
	}
	resp, err := n.protect(hdr.cmd, func() ([]byte, error) { return run(ctx, n.name(from)) })
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		// The caller's deadline passed: a timeout for the caller, not a
		// handler error (the handler most likely returned ctx.Err()).
		n.respond(from, hdr.id, statusExpired, nil)
	case err != nil:
		n.respond(from, hdr.id, statusError, []byte(err.Error()))
	case len(resp) > MaxMessageSize:
		n.respond(from, hdr.id, statusTooLarge, []byte(fmt.Sprintf("response of %d bytes exceeds %d", len(resp), MaxMessageSize)))
	default:
		n.respond(from, hdr.id, statusOK, resp)
	}
}

// handlerContext is cancelled by the request's deadline, by the caller's
// cancel message, or by Shutdown.
func (n *Node) handlerContext(timeoutMs uint32) (context.Context, context.CancelFunc) {
	if timeoutMs == 0 {
		return context.WithCancel(n.ctx)
	}
	return context.WithTimeout(n.ctx, time.Duration(timeoutMs)*time.Millisecond)
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

func (n *Node) respond(to netip.AddrPort, id uint64, status byte, payload []byte) {
	var hdr [responseHeaderSize]byte
	binary.BigEndian.PutUint64(hdr[:], id)
	hdr[8] = status
	if to == n.self {
		n.handleResponse(to, append(hdr[:], payload...))
		return
	}
	if err := n.tr.SendWithHeader(to, kindResponse, hdr[:], payload); err != nil {
		n.log.Debug("mesh: response not sent", "to", to, "err", err)
	}
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
// SendRPC's). It returns at once; callback runs on its own goroutine
// (within DefaultRPCTimeout), before Shutdown returns.
func (n *Node) SendRequest(cmd uint16, addr string, data interface{}, callback func(err error, responseData map[string]interface{})) {
	if callback == nil {
		callback = func(error, map[string]interface{}) {}
	}
	if !ValidateDataType(data) {
		callback(sendErr(addr, fmt.Errorf("%w: %T (want a map[string]interface{} or a struct pointer)", ErrInvalidData, data)), nil)
		return
	}
	payload, err := encodeData(data)
	if err != nil {
		callback(sendErr(addr, err), nil)
		return
	}
	if !n.IsPartOfCluster() {
		callback(fmt.Errorf("%w: request %d to %s refused", ErrUnhealthy, cmd, addr), nil)
		return
	}
	started := n.startHandler(func() {
		ctx, cancel := context.WithTimeout(n.ctx, DefaultRPCTimeout)
		defer cancel()
		resp, err := n.request(ctx, tableCommand, cmd, addr, payload)
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
	if !started {
		callback(sendErr(addr, ErrClosed), nil)
	}
}
