package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mesh"
)

// TestHealthcheckReady: -ready answers ready for a node that serves, also
// while MARS is gone (a MARS outage must not take serving nodes out of
// rotation), and not ready once it drains; without -ready the same node
// passes the liveness probe.
func TestHealthcheckReady(t *testing.T) {
	srv := startMARS(t)
	_, port, _ := net.SplitHostPort(srv.Addr().String())
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", port
	n, err := mesh.New(cfg, mesh.WithLogger(quiet), mesh.WithSyncInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	<-n.Ready()
	env := []string{"DIARKIS_MARS_PORT=" + port}
	code, out, errOut := runNode(t, 10*time.Second, env, "healthcheck", "-ready", "-addr", n.GetMyEndPoint())
	if code != 0 || !strings.HasPrefix(out, "ready: "+n.GetMyEndPoint()) {
		t.Fatalf("-ready of a synced node: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	srv.Close() // MARS goes away: the node stays alive and keeps serving
	eventually(t, 5*time.Second, "the node notices", func() bool { return !n.InTouchWithMars() })
	code, out, errOut = runNode(t, 10*time.Second, env, "healthcheck", "-ready", "-addr", n.GetMyEndPoint())
	if code != 0 || !strings.Contains(out, "serves (MARS silent;") {
		t.Fatalf("-ready with MARS gone: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runNode(t, 10*time.Second, env, "healthcheck", "-addr", n.GetMyEndPoint())
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("liveness with MARS gone: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Draining (Shutdown held by its readiness check): alive, not ready.
	release := make(chan struct{})
	n.SetCheckForShutdownReadiness(func() bool {
		select {
		case <-release:
			return true
		default:
			return false
		}
	})
	shut := make(chan error, 1)
	go func() { shut <- n.Shutdown() }()
	eventually(t, 5*time.Second, "the node drains", n.IsDraining)
	code, out, errOut = runNode(t, 10*time.Second, env, "healthcheck", "-ready", "-addr", n.GetMyEndPoint())
	close(release)
	if code != 1 || out != "" || !strings.Contains(errOut, "not serving: still joining, or draining") {
		t.Fatalf("-ready of a draining node: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestHealthcheckReadyNeverSynced(t *testing.T) {
	noMARS := silentAddr(t)
	_, port, _ := net.SplitHostPort(noMARS)
	cfg := config.Default()
	cfg.Port, cfg.MarsPort = "0", port
	n, err := mesh.New(cfg, mesh.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	env := []string{"DIARKIS_MARS_PORT=" + port}
	code, out, errOut := runNode(t, 10*time.Second, env, "healthcheck", "-ready", "-addr", n.GetMyEndPoint(), "-timeout", "3s")
	if code != 1 || out != "" || !strings.Contains(errOut, "not ready: it has not joined the cluster yet") {
		t.Fatalf("-ready of a node never synced: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestHealthcheckNothingThere: a port where nothing answers fails with the
// command's name and a hint that does not blame the (absent) key alone.
func TestHealthcheckNothingThere(t *testing.T) {
	addr := silentAddr(t)
	for _, args := range [][]string{{"healthcheck", "-addr", addr, "-timeout", "300ms"}, {"healthcheck", "-ready", "-addr", addr, "-timeout", "300ms"}} {
		code, out, errOut := runNode(t, 10*time.Second, nil, args...)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, "node healthcheck: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and stderr starting node healthcheck:", args, code, out, errOut)
		}
		if args[1] != "-ready" && !strings.Contains(errOut, "is a node listening there?") {
			t.Errorf("%v: stderr %q lacks the hint", args, errOut)
		}
	}
}
