package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// traceFile is `node run -trace-file`: an OpenTelemetry span exporter that
// appends one JSON object a line per ended span, for looking at traces
// without a collector (every span is sampled).
type traceFile struct {
	mu sync.Mutex
	f  *os.File
}

// spanLine is one line of a trace file.
type spanLine struct {
	Name     string            `json:"name"`
	Kind     string            `json:"kind"`
	TraceID  string            `json:"traceId"`
	SpanID   string            `json:"spanId"`
	ParentID string            `json:"parentId,omitempty"`
	Start    string            `json:"start"`
	Micros   int64             `json:"durationUs"`
	Status   string            `json:"status"`
	Error    string            `json:"error,omitempty"`
	Attrs    map[string]string `json:"attributes"`
}

// openTraceFile creates (or appends to) path and returns a tracer
// provider that writes every span there; shut it down to close the file.
func openTraceFile(path string) (*sdktrace.TracerProvider, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("-trace-file: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithSyncer(&traceFile{f: f}), sdktrace.WithSampler(sdktrace.AlwaysSample())), nil
}

func (t *traceFile) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		return nil
	}
	for _, s := range spans {
		l := spanLine{
			Name: s.Name(), Kind: s.SpanKind().String(),
			TraceID: s.SpanContext().TraceID().String(), SpanID: s.SpanContext().SpanID().String(),
			Start: s.StartTime().UTC().Format("2006-01-02T15:04:05.000000Z"), Micros: s.EndTime().Sub(s.StartTime()).Microseconds(),
			Status: s.Status().Code.String(), Error: s.Status().Description, Attrs: map[string]string{},
		}
		if p := s.Parent(); p.IsValid() {
			l.ParentID = p.SpanID().String()
		}
		for _, a := range s.Attributes() {
			l.Attrs[string(a.Key)] = a.Value.String()
		}
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if _, err := t.f.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

func (t *traceFile) Shutdown(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}
