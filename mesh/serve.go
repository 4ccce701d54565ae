package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
)

// Serving requests: a request that arrives is matched to its handler and
// queued as inbound work (inbound.go); its worker runs the handler and
// sends the answer. Context-aware handlers are listed while they run, so a
// cancel message from the caller reaches them.

// servingTable lists the context-aware handlers running, by caller and
// request ID. The zero value is ready.
type servingTable struct {
	mu sync.Mutex
	m  map[serveKey]context.CancelFunc
}

func (t *servingTable) add(k serveKey, cancel context.CancelFunc) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[serveKey]context.CancelFunc)
	}
	t.m[k] = cancel
	t.mu.Unlock()
}

func (t *servingTable) remove(k serveKey) {
	t.mu.Lock()
	delete(t.m, k)
	t.mu.Unlock()
}

// cancel cancels the handler serving k, if one runs.
func (t *servingTable) cancel(k serveKey) {
	t.mu.Lock()
	cancel := t.m[k]
	t.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

type serveKey struct {
	from netip.AddrPort
	id   uint64
}

// dispatchRequest starts serving one request (on the read goroutine: it
// must not block).
func (n *Node) dispatchRequest(from netip.AddrPort, p []byte, data []byte, reliable bool) {
	n.serveRequest(from, p, data, reliable, nil, nil)
}

// serveRequest is dispatchRequest; with inline, on a goroutine that may
// block (inline.go), where the handler may run next: *inline is set to it.
// tc is the caller's trace context, if it sent one.
func (n *Node) serveRequest(from netip.AddrPort, p []byte, data []byte, reliable bool, inline *func(), tc *trace.SpanContext) {
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
	if hdr.table == tableInternal && (hdr.cmd == internalTopic || hdr.cmd == internalInterest) {
		n.servePubsub(from, hdr, body) // pubsub.go: never blocks
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
	if ok && hdr.table != tableInternal && n.life.draining.Load() {
		// The caller picked this node before it heard of the drain: tell
		// it now, so it goes elsewhere instead of waiting.
		n.respondSoon(from, hdr.id, statusDraining, n.drainNotice(), j.deadline)
		return
	}
	if !ok {
		n.respondSoon(from, hdr.id, statusNoHandler, []byte(fmt.Sprintf("no handler for command %d", hdr.cmd)), j.deadline)
		return
	}
	var t task = j
	if tc != nil {
		t = tracedServe{j, tc}
	}
	if inline != nil {
		*inline = n.in.submitInline(from, len(body), t)
		return
	}
	n.in.submit(from, len(body), reliable, t)
}

// tracedServe is a serveJob whose caller sent its trace context (kept
// out of serveJob, which stays as small without tracing).
type tracedServe struct {
	j  *serveJob
	tc *trace.SpanContext
}

func (t tracedServe) run()    { t.j.serve(t.tc) }
func (t tracedServe) refuse() { t.j.refuse() }

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

func (j *serveJob) run() { j.serve(nil) }

// serve runs the handler and answers; tc is the caller's trace context,
// if it sent one.
func (j *serveJob) serve(tc *trace.SpanContext) {
	n := j.n
	if !j.deadline.IsZero() && !time.Now().Before(j.deadline) {
		n.respond(j.from, j.hdr.id, statusExpired, nil, j.deadline)
		return
	}
	sender := n.names.name(j.from)
	var resp []byte
	var err, ctxErr error
	var span trace.Span // the server span, when tracing is on
	if t := n.tracing.get(); t != nil && j.hdr.table != tableInternal {
		_, span = startSpan(context.Background(), t, tc, trace.SpanKindServer, requestSpanWhat[j.hdr.table], j.hdr.cmd, sender)
		defer func() { endSpan(span, err) }()
	}
	switch {
	case j.rpc.ctx != nil:
		// Only context-aware handlers get a context, with the caller's
		// deadline, cancelled by its cancel message or by Shutdown, and
		// the server span (its calls are the span's children).
		resp, err, ctxErr = j.runWithContext(sender, span)
	case j.rpc.plain != nil:
		resp, err = n.protect(j.hdr.cmd, func() ([]byte, error) { return j.rpc.plain(j.body, sender) })
	case j.cmd.raw != nil || j.cmd.decoded != nil || j.cmd.chain != nil:
		resp, err = n.protect(j.hdr.cmd, func() ([]byte, error) { return j.cmd.callRequest(j.body, sender) })
	case j.hdr.table == tableInternal:
		resp = n.healthAnswer() // the node's sync state (ready.go)
	}
	// The handler returned: this worker only answers now, and is about to
	// take the next job or park (startWorkerLocked).
	n.in.answering()
	defer n.in.answered()
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

func (j *serveJob) runWithContext(sender string, span trace.Span) (resp []byte, err, ctxErr error) {
	n := j.n
	var ctx context.Context
	var cancel context.CancelFunc
	if j.deadline.IsZero() {
		ctx, cancel = context.WithCancel(n.life.ctx)
	} else {
		ctx, cancel = context.WithDeadline(n.life.ctx, j.deadline)
	}
	if span != nil {
		ctx = trace.ContextWithSpan(ctx, span)
	}
	key := serveKey{j.from, j.hdr.id}
	n.in.serving.add(key, cancel)
	defer func() {
		n.in.serving.remove(key)
		cancel()
	}()
	resp, err = n.protect(j.hdr.cmd, func() ([]byte, error) { return j.rpc.ctx(ctx, j.body, sender) })
	return resp, err, ctx.Err()
}

// respond sends a handler's response; a full queue to the caller is
// waited on until the request's deadline (zero: none) or Shutdown.
func (n *Node) respond(to netip.AddrPort, id uint64, status byte, payload []byte, deadline time.Time) {
	hdr := responseHeader(id, status)
	if to == n.self {
		n.calls.handleResponse(to, append(hdr[:], payload...))
		return
	}
	if err := n.send.bounded(to, kindResponse, hdr[:], payload, rudp.SendOptions{}, deadline); err != nil {
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
	n.send.soon(to, kindResponse, hdr[:], payload, rudp.SendOptions{}, deadline)
}

func (n *Node) handleCancel(from netip.AddrPort, p []byte) {
	if len(p) != 8 {
		n.bad("malformed cancel", from)
		return
	}
	n.in.serving.cancel(serveKey{from, binary.BigEndian.Uint64(p)})
}
