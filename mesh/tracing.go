package mesh

import (
	"context"
	"net/netip"
	"reflect"
	"strconv"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// OpenTelemetry tracing: off unless the application gives a node a tracer
// provider (WithTracerProvider, Node.SetTracerProvider, SetTracerProvider).
// Off, every traced path costs one load and one nil check. On, requests,
// one-way messages, fan-out hops and stream opens carry the W3C trace
// context of their sender's span (tracing_wire.go), and the receiving
// node's handler span is its child.

// tracerName is the instrumentation scope of the spans.
const tracerName = "github.com/marsmesh/marsmesh/mesh"

// Span attributes.
var (
	attrSystem  = attribute.String("rpc.system", "marsmesh")
	keyMethod   = attribute.Key("rpc.method")
	keyCommand  = attribute.Key("marsmesh.command")
	keyPeerAddr = attribute.Key("network.peer.address")
	keyPeerPort = attribute.Key("network.peer.port")
	keyReliable = attribute.Key("marsmesh.reliable")
	keyTargets  = attribute.Key("marsmesh.fanout.targets")
)

// tracing holds a node's tracer; nil when tracing is off.
type tracing struct{ p atomic.Pointer[tracerHolder] }

type tracerHolder struct{ t trace.Tracer }

// get returns the tracer, or nil when tracing is off.
func (t *tracing) get() trace.Tracer {
	if h := t.p.Load(); h != nil {
		return h.t
	}
	return nil
}

// set turns tracing on with tp's tracer, or off for nil (also a nil
// pointer) or a no-op provider.
func (t *tracing) set(tp trace.TracerProvider) {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		t.p.Store(nil)
		return
	}
	if v := reflect.ValueOf(tp); v.Kind() == reflect.Pointer && v.IsNil() {
		t.p.Store(nil)
		return
	}
	t.p.Store(&tracerHolder{tp.Tracer(tracerName)})
}

// WithTracerProvider makes the node trace its requests, messages, fan-out
// and streams with tp (see the package doc, "Tracing"). nil or a no-op
// provider leaves tracing off, which is the default: the global otel
// provider is not used unless passed here (otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// SetTracerProvider turns tracing on with tp, or off with nil, for what
// the node sends and handles from now on.
func (n *Node) SetTracerProvider(tp trace.TracerProvider) { n.tracing.set(tp) }

// SetTracerProvider sets the tracer provider of the default node (see
// Node.SetTracerProvider); before Setup, of the node Setup will make.
func SetTracerProvider(tp trace.TracerProvider) {
	if n := beforeSetup(WithTracerProvider(tp), nil); n != nil {
		n.SetTracerProvider(tp)
	}
}

// spanName is a span's name: what and the command ID ("RPC 12").
func spanName(what string, cmd uint16) string {
	return what + " " + strconv.FormatUint(uint64(cmd), 10)
}

// startSpan starts a span of kind about command cmd with peer ("ip:port";
// "": none). parent, if not nil, is the remote parent's context (the span is
// then its child, else the child of ctx's span). It returns the context
// with the span and the span.
func startSpan(ctx context.Context, t trace.Tracer, parent *trace.SpanContext, kind trace.SpanKind, what string, cmd uint16, peer string, extra ...attribute.KeyValue) (context.Context, trace.Span) {
	if ctx == nil { // SendRPCWithContext takes a nil ctx
		ctx = context.Background()
	}
	if parent != nil {
		ctx = trace.ContextWithRemoteSpanContext(ctx, *parent)
	}
	ctx, span := t.Start(ctx, spanName(what, cmd), trace.WithSpanKind(kind))
	if !span.IsRecording() {
		return ctx, span // not sampled: no attributes to make
	}
	attrs := make([]attribute.KeyValue, 0, 5+len(extra))
	attrs = append(attrs, attrSystem, keyMethod.String(strconv.FormatUint(uint64(cmd), 10)), keyCommand.Int(int(cmd)))
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		attrs = append(attrs, keyPeerAddr.String(ap.Addr().String()), keyPeerPort.Int(int(ap.Port())))
	} else if peer != "" {
		attrs = append(attrs, keyPeerAddr.String(peer))
	}
	span.SetAttributes(append(attrs, extra...)...)
	return ctx, span
}

// endSpan ends span, with an error status if err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// carried returns the span context a message sent within span carries,
// or nil if it has none worth sending.
func carried(span trace.Span) *trace.SpanContext {
	sc := span.SpanContext()
	if !sc.IsValid() {
		return nil
	}
	return &sc
}
