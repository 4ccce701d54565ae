package mesh

import (
	"encoding/binary"

	"go.opentelemetry.io/otel/trace"
)

// Trace context on the wire. A traced request, command, fan-out hop or
// stream open is sent as a batch (kindBatch) of two entries: a kindTrace
// entry, then the message as it is sent untraced. The receiver applies
// the trace context to the entry that follows it. A node older than
// tracing drops the kindTrace entry as an unknown kind (one rate-limited
// warning) and handles the message as usual, untraced: nodes of both
// revisions interoperate, and a message sent untraced is byte for byte
// what it was before.
//
//	kindTrace: [version u8 = 0][trace ID 16][span ID 8][trace flags u8][tracestate]
//
// The tracestate is the W3C header's text (at most maxTraceState bytes,
// else left out). An entry of another version is ignored.

const (
	traceVersion    byte = 0
	traceHeaderSize      = 1 + 16 + 8 + 1
	maxTraceState        = 512
)

// appendTraceContext writes sc as the body of a kindTrace entry.
func appendTraceContext(b []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	b = append(b, traceVersion)
	b = append(b, tid[:]...)
	b = append(b, sid[:]...)
	b = append(b, byte(sc.TraceFlags()))
	if ts := sc.TraceState(); ts.Len() > 0 {
		if s := ts.String(); len(s) <= maxTraceState {
			b = append(b, s...)
		}
	}
	return b
}

// parseTraceContext reads the body of a kindTrace entry. ok is false for
// an entry of an unknown version (no error: a later revision's).
func parseTraceContext(p []byte) (sc trace.SpanContext, ok bool, err error) {
	if len(p) < traceHeaderSize {
		return trace.SpanContext{}, false, errMalformed
	}
	if p[0] != traceVersion {
		return trace.SpanContext{}, false, nil
	}
	var cfg trace.SpanContextConfig
	copy(cfg.TraceID[:], p[1:17])
	copy(cfg.SpanID[:], p[17:25])
	cfg.TraceFlags = trace.TraceFlags(p[25])
	cfg.Remote = true
	if rest := p[traceHeaderSize:]; len(rest) > 0 {
		if len(rest) > maxTraceState {
			return trace.SpanContext{}, false, errMalformed
		}
		if cfg.TraceState, err = trace.ParseTraceState(string(rest)); err != nil {
			return trace.SpanContext{}, false, errMalformed
		}
	}
	sc = trace.NewSpanContext(cfg)
	if !sc.IsValid() {
		return trace.SpanContext{}, false, errMalformed
	}
	return sc, true, nil
}

// tracedHeader returns the header of a batch that carries sc, then one
// message of kind made of hdr and a body of bodyLen bytes (sent after
// this header): send it as kind kindBatch with the body.
func tracedHeader(sc *trace.SpanContext, kind byte, hdr []byte, bodyLen int) []byte {
	b := make([]byte, 5, 5+traceHeaderSize+5+len(hdr))
	b[0] = kindTrace
	b = appendTraceContext(b, *sc)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-5))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(hdr)+bodyLen))
	return append(b, hdr...)
}
