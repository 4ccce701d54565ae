package mesh

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkRPCTracing: SendRPC of 64 bytes, one caller and 64 callers,
// with tracing off (as BenchmarkRPC and BenchmarkRPCParallel), on (both
// nodes tracing, every span sampled, a batch span processor as in
// production, an exporter that drops the spans) and sampled (the same with
// 1 % of the traces sampled), one after the other:
//
//	go test -run '^$' -bench RPCTracing -benchmem -count 3 ./mesh
func BenchmarkRPCTracing(b *testing.B) {
	samplers := map[string]sdktrace.Sampler{
		"on":      sdktrace.AlwaysSample(),
		"sampled": sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01)), // 1 % of the traces
	}
	for _, name := range []string{"off", "on", "sampled"} {
		var opts []Option
		if name != "off" {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()),
				sdktrace.WithSampler(samplers[name]))
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
