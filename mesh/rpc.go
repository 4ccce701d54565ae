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
	"go.opentelemetry.io/otel/trace"
)

// DefaultRPCTimeout is the deadline SendRPC and SendRequest give a request.
const DefaultRPCTimeout = 3 * time.Second

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
	var tc *trace.SpanContext // the client span's, carried in the request
	if t := n.tracing.get(); t != nil && table != tableInternal {
		var span trace.Span
		ctx, span = startSpan(ctx, t, nil, trace.SpanKindClient, requestSpanWhat[table], cmd, addr)
		defer func() { endSpan(span, err) }()
		tc = carried(span)
	}
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
		n.serveRequest(to, hdr[:], data, true, nil, tc)
	} else if err := n.sendRequest(ctx, to, hdr[:], data, deadline, tc); err != nil {
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

// sendRequest sends a request, with the trace context tc if not nil; a
// full queue to the peer is waited on until ctx ends, the deadline passes
// or Shutdown.
func (n *Node) sendRequest(ctx context.Context, to netip.AddrPort, hdr, data []byte, deadline time.Time, tc *trace.SpanContext) error {
	kind := kindRequest
	if tc != nil {
		kind, hdr = kindBatch, tracedHeader(tc, kindRequest, hdr, len(data))
	}
	if ctx == nil || ctx.Done() == nil { // no context, or one that never ends (SendRPC's Background)
		return n.send.bounded(to, kind, hdr, data, rudp.SendOptions{}, deadline)
	}
	return n.tr.SendMsg(ctx, to, kind, hdr, data, rudp.SendOptions{}) // wraps ctx.Err() if it ends
}

// requestSpanWhat names the spans of requests by handler table.
var requestSpanWhat = [...]string{tableRPC: "RPC", tableCommand: "Request", tableInternal: "Health"}

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
