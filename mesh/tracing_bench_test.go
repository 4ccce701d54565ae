package mesh

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkRPCTracing: SendRPC of 64 bytes, one caller and 64 callers,
// with tracing off (as BenchmarkRPC and BenchmarkRPCParallel) and on (both
// nodes tracing, every span sampled, a batch span processor as in
// production, an exporter that drops the spans), one after the other:
//
//	go test -run '^$' -bench RPCTracing -benchmem -count 3 ./mesh
func BenchmarkRPCTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		var opts []Option
		if on {
			name = "on"
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()),
				sdktrace.WithSampler(sdktrace.AlwaysSample()))
			b.Cleanup(func() { tp.Shutdown(context.Background()) })
			opts = append(opts, WithTracerProvider(tp))
		}
		for _, callers := range []int{1, 64} {
			b.Run(name+"/c="+map[int]string{1: "1", 64: "64"}[callers], func(b *testing.B) {
				c := newCluster(b, 2, opts...)
				a, srv := c.nodes[0], c.nodes[1]
				srv.HandleRPC(1, func(d []byte, _ string) ([]byte, error) { return d, nil })
				msg := make([]byte, 64)
				to := srv.GetMyEndPoint()
				concurrentRPCs(b, a, to, msg, callers, 200) // warm up
				b.ResetTimer()
				el := concurrentRPCs(b, a, to, msg, callers, b.N)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/el.Seconds(), "rpc/s")
			})
		}
	}
}
