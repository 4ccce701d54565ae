package mesh_test

import (
	"context"
	"fmt"

	"github.com/marsmesh/marsmesh/mesh"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// WithTracerProvider makes a node trace what it sends and handles; a
// handler that takes a context passes the trace on. Here A calls B, whose
// handler calls C: one trace, each span the child of the one before.
func ExampleWithTracerProvider() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	exp := tracetest.NewInMemoryExporter() // in production: an OTLP exporter and WithBatcher
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	var nodes []*mesh.Node
	for range 3 {
		n, err := mesh.New(cfg, mesh.WithTracerProvider(tp), mesh.WithLogger(quietLog))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer n.Shutdown()
		<-n.Ready()
		nodes = append(nodes, n)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	const move, save = 1, 2
	b.HandleRPCWithContext(move, func(ctx context.Context, data []byte, _ string) ([]byte, error) {
		return b.SendRPCWithContext(ctx, save, c.GetMyEndPoint(), data) // ctx holds this handler's span
	})
	c.HandleRPC(save, func(data []byte, _ string) ([]byte, error) { return []byte("saved"), nil })

	resp, err := a.SendRPC(move, b.GetMyEndPoint(), []byte("x"))
	fmt.Println(string(resp), err)
	// A server span ends once its handler has answered, so B's and C's
	// may still be on their way; every span in is of the one trace.
	traces := map[string]bool{}
	for _, s := range exp.GetSpans() {
		traces[s.SpanContext.TraceID().String()] = true
	}
	fmt.Println("traces:", len(traces))
	// Output:
	// saved <nil>
	// traces: 1
}
