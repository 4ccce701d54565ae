package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

// node kv and node lease against a MARS in this process.
func TestKVAndLeaseCommands(t *testing.T) {
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet, LeaseHold: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr().String()
	run := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb strings.Builder
		code := realMain(context.Background(), append(args, "-mars", addr), &out, &errb)
		return code, out.String(), errb.String()
	}
	want := func(code int, out, errOut string, wantCode int, wantOut string) {
		t.Helper()
		if code != wantCode || !strings.Contains(out+errOut, wantOut) {
			t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, wantCode, wantOut)
		}
	}
	code, out, errOut := run("kv", "put", "room/1", "hello")
	want(code, out, errOut, exitOK, "revision ")
	rev := strings.TrimSpace(strings.TrimPrefix(out, "revision "))
	code, out, errOut = run("kv", "put", "room/1", "again", "-rev", "1")
	want(code, out, errOut, exitFail, "not 1")
	code, out, errOut = run("kv", "put", "-rev", rev, "room/1", "again")
	want(code, out, errOut, exitOK, "revision ")
	code, out, errOut = run("kv", "get", "room/1")
	want(code, out, errOut, exitOK, "again\n")
	code, out, errOut = run("kv", "put", "room/2", "x", "-ttl", "1m")
	want(code, out, errOut, exitOK, "revision ")
	code, out, errOut = run("kv", "ls", "room/")
	want(code, out, errOut, exitOK, "2 keys at revision")
	if !strings.Contains(out, `"again"`) || !strings.Contains(out, "room/2") {
		t.Fatalf("ls: %s", out)
	}
	code, out, errOut = run("kv", "rm", "room/2")
	want(code, out, errOut, exitOK, "deleted at revision")
	code, out, errOut = run("kv", "get", "room/2")
	want(code, out, errOut, exitFail, "not found")
	code, out, errOut = run("kv", "get")
	want(code, out, errOut, exitUsage, "want KEY")
	code, out, errOut = run("kv", "frob")
	want(code, out, errOut, exitUsage, "Usage: node kv")
	code, out, errOut = run("kv", "put", "", "x")
	want(code, out, errOut, exitFail, "invalid key")

	// A node holds a lease; lease ls shows it.
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", strings.Split(addr, ":")[1]
	n, err := mesh.New(cfg, mesh.WithLogger(quiet), mesh.WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	<-n.Ready()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := n.Claim(ctx, "room/1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("lease", "ls")
	want(code, out, errOut, exitOK, "1 lease")
	if !strings.Contains(out, n.GetMyEndPoint()) || !strings.Contains(out, "room/1") {
		t.Fatalf("lease ls: %s", out)
	}
	l.Release(ctx)
	code, out, errOut = run("lease", "ls", "room/")
	want(code, out, errOut, exitOK, "0 leases")
}
