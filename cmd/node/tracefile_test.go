package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mesh"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// readSpans returns the spans of a -trace-file written so far.
func readSpans(t *testing.T, path string) []spanLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []spanLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l spanLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // a line being written
		}
		out = append(out, l)
	}
	return out
}

func findSpan(spans []spanLine, name, kind string) (spanLine, bool) {
	for _, s := range spans {
		if s.Name == name && s.Kind == kind {
			return s, true
		}
	}
	return spanLine{}, false
}

// TestTraceAcrossProcesses: a node in this process calls B (a `node run`
// process), whose chain handler calls C (another): one trace, with the
// spans of B and C in their -trace-file and the parent links right.
func TestTraceAcrossProcesses(t *testing.T) {
	srv := startMARS(t)
	dir := t.TempDir()
	env := []string{"DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", srv.Addr().Port()), "DIARKIS_PORT=0"}
	fileB, fileC := filepath.Join(dir, "b.jsonl"), filepath.Join(dir, "c.jsonl")
	b := start(t, env, "run", "-trace-file", fileB)
	c := start(t, env, "run", "-trace-file", fileC)
	addrB, addrC := b.joined(t), c.joined(t)

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", fmt.Sprint(srv.Addr().Port())
	a, err := mesh.New(cfg, mesh.WithTracerProvider(tp), mesh.WithLogger(quiet), mesh.WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	<-a.Ready()
	eventually(t, 10*time.Second, "A lists B and C", func() bool { return len(a.GetNodeAddresses(nil)) == 3 })
	resp, err := a.SendRPC(cmdChain, addrB, []byte(addrC))
	if err != nil || string(resp) != addrB+" "+addrC {
		t.Fatalf("chain: %q, %v", resp, err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("A exported %d spans, want 1", len(spans))
	}
	root := spans[0]
	var bServer, bClient, cServer spanLine
	eventually(t, 10*time.Second, "B and C write their spans", func() bool {
		var ok1, ok2, ok3 bool
		sb, sc := readSpans(t, fileB), readSpans(t, fileC)
		bServer, ok1 = findSpan(sb, fmt.Sprintf("RPC %d", cmdChain), "server")
		bClient, ok2 = findSpan(sb, fmt.Sprintf("RPC %d", cmdChain), "client")
		cServer, ok3 = findSpan(sc, fmt.Sprintf("RPC %d", cmdChain), "server")
		return ok1 && ok2 && ok3
	})
	trace := root.SpanContext.TraceID().String()
	for _, s := range []spanLine{bServer, bClient, cServer} {
		if s.TraceID != trace {
			t.Errorf("span %s %s in trace %s, want %s", s.Kind, s.Name, s.TraceID, trace)
		}
		if s.Attrs["rpc.system"] != "marsmesh" || s.Status == "Error" {
			t.Errorf("span %+v", s)
		}
	}
	if bServer.ParentID != root.SpanContext.SpanID().String() || bClient.ParentID != bServer.SpanID || cServer.ParentID != bClient.SpanID {
		t.Errorf("parent links: A %s -> B server %s (parent %s) -> B client %s (parent %s) -> C server (parent %s)",
			root.SpanContext.SpanID(), bServer.SpanID, bServer.ParentID, bClient.SpanID, bClient.ParentID, cServer.ParentID)
	}
	if got := cServer.Attrs["network.peer.address"] + ":" + cServer.Attrs["network.peer.port"]; got != addrB {
		t.Errorf("C's server span names peer %q, want B %s", got, addrB)
	}
	if strings.Contains(b.stderr.String()+c.stderr.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s\n%s", b.stderr.String(), c.stderr.String())
	}
}
