package mesh

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracedNode is a node of a test cluster with its own tracer provider and
// in-memory exporter, so each node's spans are told apart.
type tracedNode struct {
	*Node
	exp *tracetest.InMemoryExporter
}

func newTracedCluster(t *testing.T, count int) (*cluster, []tracedNode) {
	t.Helper()
	c := newCluster(t, 0)
	var out []tracedNode
	for range count {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		out = append(out, tracedNode{c.add(WithTracerProvider(tp)), exp})
	}
	c.waitListed(count)
	return c, out
}

// waitSpan waits until n has exported a span called name and returns it.
func (n tracedNode) waitSpan(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	eventually(t, 10*time.Second, func() bool {
		for _, s := range n.exp.GetSpans() {
			if s.Name == name {
				found = s
				return true
			}
		}
		return false
	}, "node %s exports span %q", n.Addr, name)
	return found
}

// childOf checks that child is in parent's trace with parent as its parent.
func childOf(t *testing.T, child, parent tracetest.SpanStub) {
	t.Helper()
	if child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		t.Errorf("span %q is in trace %s, %q in %s", child.Name, child.SpanContext.TraceID(), parent.Name, parent.SpanContext.TraceID())
	}
	if child.Parent.SpanID() != parent.SpanContext.SpanID() {
		t.Errorf("span %q has parent %s, want %q (%s)", child.Name, child.Parent.SpanID(), parent.Name, parent.SpanContext.SpanID())
	}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// TestTracingRPCChain: A calls B, whose handler calls C, over UDP on
// loopback: one trace, spans from all three nodes, each the child of the
// span that called it.
func TestTracingRPCChain(t *testing.T) {
	_, ns := newTracedCluster(t, 3)
	a, b, cc := ns[0], ns[1], ns[2]
	b.HandleRPCWithContext(1, func(ctx context.Context, d []byte, _ string) ([]byte, error) {
		return b.SendRPCWithContext(ctx, 2, cc.Addr, d)
	})
	cc.HandleRPC(2, func(d []byte, _ string) ([]byte, error) { return append(d, '!'), nil })
	resp, err := a.SendRPC(1, b.Addr, []byte("hi"))
	if err != nil || string(resp) != "hi!" {
		t.Fatalf("SendRPC: %q, %v", resp, err)
	}
	aClient := a.waitSpan(t, "RPC 1")
	bServer := b.waitSpan(t, "RPC 1")
	bClient := b.waitSpan(t, "RPC 2")
	cServer := cc.waitSpan(t, "RPC 2")
	if aClient.Parent.IsValid() {
		t.Errorf("the caller's span has a parent: %v", aClient.Parent)
	}
	childOf(t, bServer, aClient)
	childOf(t, bClient, bServer)
	childOf(t, cServer, bClient)
	for _, s := range []tracetest.SpanStub{aClient, bServer, bClient, cServer} {
		if !s.Parent.IsValid() {
			continue
		}
		if got := attr(s, "rpc.system"); got != "marsmesh" {
			t.Errorf("span %q: rpc.system %q", s.Name, got)
		}
	}
	if aClient.SpanKind != trace.SpanKindClient || bServer.SpanKind != trace.SpanKindServer || !bServer.Parent.IsRemote() {
		t.Errorf("kinds: %v %v, remote parent %v", aClient.SpanKind, bServer.SpanKind, bServer.Parent.IsRemote())
	}
	if got := attr(aClient, "network.peer.address") + ":" + attr(aClient, "network.peer.port"); got != b.Addr {
		t.Errorf("caller's peer %q, want %q", got, b.Addr)
	}
	if got := attr(cServer, "marsmesh.command"); got != "2" {
		t.Errorf("command attribute %q", got)
	}
}

// TestTracingErrorsAndParentContext: a handler's error marks both spans;
// a caller's own span is the parent of the request's.
func TestTracingErrorsAndParentContext(t *testing.T) {
	_, ns := newTracedCluster(t, 2)
	a, b := ns[0], ns[1]
	b.HandleRPC(3, func([]byte, string) ([]byte, error) { return nil, errors.New("no luck") })
	ctx, root := a.Node.tracing.get().Start(context.Background(), "game tick")
	_, err := a.SendRPCWithContext(ctx, 3, b.Addr, nil)
	root.End()
	var re *RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("err %v, want a RemoteError", err)
	}
	client, server, tick := a.waitSpan(t, "RPC 3"), b.waitSpan(t, "RPC 3"), a.waitSpan(t, "game tick")
	childOf(t, client, tick)
	childOf(t, server, client)
	if _, err := a.SendRPC(4, "no address", nil); !IsSendError(err) {
		t.Fatalf("bad address: %v", err)
	}
	for _, s := range []tracetest.SpanStub{client, server, a.waitSpan(t, "RPC 4")} {
		if s.Status.Code.String() != "Error" || s.Status.Description == "" {
			t.Errorf("span %q: status %v", s.Name, s.Status)
		}
	}
}

// TestTracingMessagesFanoutStreams: one-way messages, fan-out with a relay
// and streams carry the trace too.
func TestTracingMessagesFanoutStreams(t *testing.T) {
	_, ns := newTracedCluster(t, 3)
	a, b, cc := ns[0], ns[1], ns[2]
	got := make(chan string, 8)
	for _, n := range ns {
		n.SetCommandHandler(5, func(_ []byte, _ string) ([]byte, error) {
			got <- n.Addr
			return nil, nil
		})
	}
	if err := a.Send(5, b.Addr, []byte("x")); err != nil {
		t.Fatal(err)
	}
	<-got
	childOf(t, b.waitSpan(t, "Command 5"), a.waitSpan(t, "Send 5"))

	// Fan-out with limit 1: A sends to B with C as B's share.
	b.exp.Reset()
	if err := a.SendMany(5, []string{b.Addr, cc.Addr}, []byte("y"), 1); err != nil {
		t.Fatal(err)
	}
	<-got
	<-got
	root := a.waitSpan(t, "SendMany 5")
	relay := b.waitSpan(t, "SendMany relay 5")
	childOf(t, b.waitSpan(t, "Command 5"), root)
	childOf(t, relay, root)
	childOf(t, cc.waitSpan(t, "Command 5"), relay)

	// A stream: the handler's span is the child of the opener's.
	cc.HandleStream(6, func(ctx context.Context, s *Stream) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return errors.New("no span in the handler's context")
		}
		m, err := s.Recv()
		if err != nil {
			return err
		}
		return s.Send(m)
	})
	s, err := a.OpenStream(context.Background(), 6, cc.Addr, []byte("z"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || string(m) != "z" {
		t.Fatalf("Recv: %q, %v", m, err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("Recv at the end: %v", err)
	}
	s.Close()
	opener, handler := a.waitSpan(t, "Stream 6"), cc.waitSpan(t, "Stream 6")
	childOf(t, handler, opener)
	if opener.Status.Code.String() == "Error" || handler.Status.Code.String() == "Error" {
		t.Errorf("stream statuses %v, %v", opener.Status, handler.Status)
	}
}

// TestTracingSendInterval: traced commands through the send buffer keep
// their order and context.
func TestTracingSendInterval(t *testing.T) {
	c := newCluster(t, 0)
	c.cfg.SendInterval = 20
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	a, b := c.add(WithTracerProvider(tp)), c.add(WithTracerProvider(tp))
	c.waitListed(2)
	got := make(chan byte, 100)
	b.SetCommandHandler(7, func(p []byte, _ string) ([]byte, error) { got <- p[0]; return nil, nil })
	for i := range 100 {
		if i%2 == 0 {
			a.SetTracerProvider(tp)
		} else {
			a.SetTracerProvider(nil) // untraced messages in the same batches
		}
		if err := a.Send(7, b.Addr, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if v := <-got; v != byte(i) {
			t.Fatalf("message %d arrived as %d", i, v)
		}
	}
	eventually(t, 10*time.Second, func() bool {
		sends, handled := 0, 0
		for _, s := range exp.GetSpans() {
			switch s.Name {
			case "Send 7":
				sends++
			case "Command 7":
				if s.Parent.IsValid() {
					handled++
				}
			}
		}
		return sends == 50 && handled == 50
	}, "50 traced sends and 50 handlers with a parent")
}

// TestTracingOff: no provider, nil or a no-op one leaves tracing off; a
// traced caller and an untraced server still talk.
func TestTracingOff(t *testing.T) {
	for _, tp := range []trace.TracerProvider{nil, noop.NewTracerProvider(), (*sdktrace.TracerProvider)(nil)} {
		var tr tracing
		tr.set(tp)
		if tr.get() != nil {
			t.Errorf("%T: tracing on", tp)
		}
	}
	c := newCluster(t, 0)
	exp := tracetest.NewInMemoryExporter()
	a := c.add(WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))))
	b := c.add()
	c.waitListed(2)
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	if resp, err := a.SendRPC(1, b.Addr, []byte("ok")); err != nil || string(resp) != "ok" {
		t.Fatalf("SendRPC: %q, %v", resp, err)
	}
	if n := len(exp.GetSpans()); n != 1 {
		t.Errorf("%d spans, want the caller's one", n)
	}
}

// TestTraceContextWire: the kindTrace entry round-trips, an unknown
// version is skipped, and bad entries are refused.
func TestTraceContextWire(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=x1,other=y")
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled, TraceState: ts,
	})
	b := appendTraceContext(nil, sc)
	got, ok, err := parseTraceContext(b)
	if err != nil || !ok || !got.Equal(sc.WithRemote(true)) {
		t.Fatalf("round trip: %v %v %v", got, ok, err)
	}
	if _, ok, err := parseTraceContext(append([]byte{1}, b[1:]...)); ok || err != nil {
		t.Errorf("version 1: %v %v", ok, err)
	}
	for _, bad := range [][]byte{nil, b[:traceHeaderSize-1], make([]byte, traceHeaderSize), append(b[:traceHeaderSize:traceHeaderSize], "=bad"...)} {
		if _, _, err := parseTraceContext(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
	// A traced message is the untraced one with a trace entry in front.
	hdr := []byte{9, 9, 9}
	th := tracedHeader(&sc, kindRequest, hdr, 4)
	entry := append([]byte{kindRequest, 0, 0, 0, 7}, hdr...)
	if !bytes.HasSuffix(th, entry) || th[0] != kindTrace {
		t.Errorf("traced header %x", th)
	}
}

// FuzzTraceContext: the decoder never panics, and what it accepts encodes
// back to the same context.
func FuzzTraceContext(f *testing.F) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: 1})
	f.Add(appendTraceContext(nil, sc))
	ts, _ := trace.ParseTraceState("a=b")
	f.Add(appendTraceContext(nil, sc.WithTraceState(ts)))
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, traceHeaderSize))
	f.Fuzz(func(t *testing.T, p []byte) {
		sc, ok, err := parseTraceContext(p)
		if err != nil || !ok {
			if sc.IsValid() {
				t.Fatal("invalid entry gave a valid context")
			}
			return
		}
		if !sc.IsValid() || !sc.IsRemote() {
			t.Fatalf("accepted %v", sc)
		}
		again, ok, err := parseTraceContext(appendTraceContext(nil, sc))
		if err != nil || !ok || !again.Equal(sc) {
			t.Fatalf("re-encoded %v: %v %v %v", sc, again, ok, err)
		}
	})
}

// FuzzTracedBatch: a batch with trace entries never panics the router of
// a traced node. The sender is not listed and the node drops what is not
// from a listed node (strictCheckForExternal), so nothing is answered.
func FuzzTracedBatch(f *testing.F) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: 1})
	var req [requestHeaderSize]byte
	appendRequestHeader(req[:0], 1, tableRPC, 1, 100)
	f.Add(append(tracedHeader(&sc, kindRequest, req[:], 2), 'h', 'i'))
	f.Add(append(tracedHeader(&sc, kindCommand, []byte{0, 1}, 1), 'x'))
	f.Add([]byte{kindTrace, 0, 0, 0, 1, 0})
	c := newCluster(f, 0)
	c.cfg.StrictCheckForExternal = true
	n := c.add(WithTracerProvider(sdktrace.NewTracerProvider()))
	n.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	n.SetCommandHandler(1, func([]byte, string) ([]byte, error) { return nil, nil })
	from := netip.MustParseAddrPort("127.0.0.1:1")
	f.Fuzz(func(t *testing.T, p []byte) {
		n.handleBatch(from, p, true)
	})
}

// TestTracingSamplingDecisionTravels: the receiving node follows the
// caller's sampling decision (ParentBased), sampled or not.
func TestTracingSamplingDecisionTravels(t *testing.T) {
	c := newCluster(t, 0)
	expA, expB := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	tpA := sdktrace.NewTracerProvider(sdktrace.WithSyncer(expA), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	tpB := sdktrace.NewTracerProvider(sdktrace.WithSyncer(expB), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	a, b := c.add(WithTracerProvider(tpA)), c.add(WithTracerProvider(tpB))
	c.waitListed(2)
	b.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
	if _, err := a.SendRPC(1, b.Addr, nil); err != nil {
		t.Fatal(err)
	}
	// B samples nothing of its own, but its span of a sampled caller is.
	eventually(t, 10*time.Second, func() bool { return len(expB.GetSpans()) == 1 }, "B exports the span of the sampled call")
	expB.Reset()
	a.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(expA), sdktrace.WithSampler(sdktrace.NeverSample())))
	b.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(expB), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))))
	if _, err := a.SendRPC(1, b.Addr, nil); err != nil {
		t.Fatal(err)
	}
	// A call made without a trace (a plain SendRPC from B to itself) shows
	// B samples its own; the unsampled caller's span stays unsampled.
	if _, err := b.SendRPC(1, b.Addr, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(expB.GetSpans()) == 2 }, "B exports its own call's two spans")
	if n := len(expB.GetSpans()); n != 2 {
		t.Errorf("B exported %d spans, want only the 2 of its own call", n)
	}
}
