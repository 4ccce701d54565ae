package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// TestStatusNamesTheReplicaInUse: with the first MARS address silent,
// node status moves to the second, names it, and lists the first as
// failed.
func TestStatusNamesTheReplicaInUse(t *testing.T) {
	silent := hold(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(silent)
	srv, err := mars.Listen("127.0.0.2:"+port, mars.ServerOptions{Logger: quiet})
	if err != nil {
		t.Skipf("no MARS on 127.0.0.2:%s (%v): this test needs the whole loopback range", port, err)
	}
	defer srv.Close()
	env := []string{"DIARKIS_MARS_ADDR=127.0.0.1,127.0.0.2", "DIARKIS_MARS_PORT=" + port, "DIARKIS_RETRY_INTERVAL=200", "DIARKIS_RETRY_TIMEOUT=1000"}
	code, out, errOut := runNode(t, 30*time.Second, env, "status", "-timeout", "10s")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"MARS 127.0.0.2:" + port + " (replica 2 of 2), app", "MARS replicas",
		"127.0.0.1:" + port + "  failed: no answer (left it", "127.0.0.2:" + port + "  in use"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
