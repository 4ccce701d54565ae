package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mesh"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracingWithOlderNodes: a traced node talks to `node run` processes
// of a revision before tracing, which drop the trace entries and serve
// the messages. It needs that binary, so it runs only when
// MARSMESH_OLD_NODE names it, e.g.:
//
//	git archive a4c02e6 | tar -x -C /tmp/old && (cd /tmp/old && go build -o node ./cmd/node)
//	MARSMESH_OLD_NODE=/tmp/old/node go test ./cmd/node -run TestTracingWithOlderNodes
func TestTracingWithOlderNodes(t *testing.T) {
	old := os.Getenv("MARSMESH_OLD_NODE")
	if old == "" {
		t.Skip("MARSMESH_OLD_NODE (a node binary of an older revision) not set")
	}
	srv := startMARS(t)
	env := []string{"DIARKIS_MARS_ADDR=127.0.0.1", fmt.Sprintf("DIARKIS_MARS_PORT=%d", srv.Addr().Port()), "DIARKIS_PORT=0"}
	b, c := startBin(t, old, env, "run"), startBin(t, old, env, "run")
	addrB, addrC := b.joined(t), c.joined(t)
	exp := tracetest.NewInMemoryExporter()
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", fmt.Sprint(srv.Addr().Port())
	a, err := mesh.New(cfg, mesh.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))),
		mesh.WithLogger(quiet), mesh.WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	<-a.Ready()
	eventually(t, 10*time.Second, "A lists B and C", func() bool { return len(a.GetNodeAddresses(nil)) == 3 })
	for range 20 {
		if resp, err := a.SendRPC(cmdEcho, addrB, []byte("ping")); err != nil || string(resp) != "ping" {
			t.Fatalf("echo RPC: %q, %v", resp, err)
		}
	}
	answered := make(chan error, 1)
	a.SendRequest(cmdCount, addrB, map[string]interface{}{"add": 5}, func(err error, m map[string]interface{}) {
		if err == nil && mesh.GetInt64(m, "count") != 5 {
			err = fmt.Errorf("answer %v", m)
		}
		answered <- err
	})
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if err := a.SendMany(cmdBroadcast, []string{addrB, addrC}, map[string]interface{}{"text": "hi"}, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "both older nodes get the broadcast", func() bool {
		return strings.Contains(b.stderr.String(), "broadcast received") && strings.Contains(c.stderr.String(), "broadcast received")
	})
	if len(exp.GetSpans()) < 22 {
		t.Errorf("%d spans on the traced node", len(exp.GetSpans()))
	}
}
