package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mesh"
)

// cmdHealthcheck sends the mesh health-check request to one node. It does
// not wait for MARS (the health check needs none), so it answers in about
// one round trip, with MARS up or down. With -ready it also reads the
// node's sync state from the answer and succeeds only if the node has
// heard from MARS within its last three sync intervals.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("healthcheck", "-addr HOST:PORT [-timeout 5s] [-ready]",
		"Sends the mesh health-check request to the node at -addr (its mesh address) and\n"+
			"exits 0 if it answers within -timeout, 1 if not: a Kubernetes liveness or startup\n"+
			"probe. It binds a free port of its own and needs no MARS. With -ready it exits 0\n"+
			"only if the node has also synced with MARS within its last three sync intervals:\n"+
			"a readiness probe.")
	addr := fs.String("addr", "", "mesh `host:port` of the node to check (required)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	configPath := fs.String("config", "", "mesh configuration `file` (JSON); empty: defaults. DIARKIS_* environment variables override both")
	newLog := logFlags(fs, "error", " (stderr)")
	quiet := fs.Bool("q", false, "print nothing on success")
	ready := fs.Bool("ready", false, "readiness: also require that the node synced with MARS within its last three sync intervals")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	name := fs.Name()
	if *addr == "" {
		return usageError(stderr, name, errors.New("-addr is required"))
	}
	host, port, err := net.SplitHostPort(*addr)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return usageError(stderr, name, fmt.Errorf("-addr %q: want host:port", *addr))
	}
	if *timeout <= 0 {
		return usageError(stderr, name, fmt.Errorf("-timeout %v: must be positive", *timeout))
	}
	log, err := newLog(stderr)
	if err != nil {
		return usageError(stderr, name, err)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return badConfig(stderr, name, err)
	}
	// Bind where the target can be reached from, whatever address the
	// configuration names: loopback for a loopback target, else any.
	cfg.NIC, cfg.Address = "", bindFor(host)

	g, err := startGuest(cfg, "", log)
	if err != nil {
		return failure(stderr, name, err)
	}
	defer stopGuest(g, 100*time.Millisecond) // 1 ms with MARS up; without, the close would wait 1 s for it
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	if *ready {
		return readyCheck(cctx, g, *addr, *timeout, *quiet, stdout, stderr)
	}
	if err := g.HealthCheck(cctx, *addr); err != nil {
		return failure(stderr, name, fmt.Errorf("%s did not answer within %v%s: %w", *addr, *timeout, keyHint(cfg), err))
	}
	if !*quiet {
		fmt.Fprintf(stdout, "ok: %s answered in %v\n", *addr, time.Since(start).Round(time.Microsecond))
	}
	return exitOK
}

// readyCheck is healthcheck -ready: the node must answer and serve (it has
// joined the cluster and is not draining). Contact with MARS is not asked:
// a MARS outage does not take serving nodes out of rotation.
func readyCheck(ctx context.Context, g *mesh.Node, addr string, timeout time.Duration, quiet bool, stdout, stderr io.Writer) int {
	const name = "node healthcheck"
	st, err := g.ReadyCheck(ctx, addr)
	if err != nil {
		return failure(stderr, name, fmt.Errorf("%s did not answer within %v: %w", addr, timeout, err))
	}
	switch {
	case !st.Synced:
		return failure(stderr, name, fmt.Errorf("%s is alive but not ready: it has not joined the cluster yet (no sync with MARS)", addr))
	case !st.Serving:
		return failure(stderr, name, fmt.Errorf("%s is alive but not serving: still joining, or draining (shutting down)", addr))
	}
	if !quiet {
		touch := "in touch with MARS"
		if !st.InTouch {
			touch = "MARS silent"
		}
		fmt.Fprintf(stdout, "ready: %s serves (%s; last sync %v ago)\n", addr, touch, st.Age.Round(time.Millisecond))
	}
	return exitOK
}

// keyHint names the cluster key as one possible cause among others: a
// node of a keyed cluster answers no process without its key, and a
// keyless node none with one; nothing listening looks the same.
func keyHint(cfg config.Mesh) string {
	if keys, _ := cfg.Keys(); len(keys) > 0 {
		return " (is a node listening there, with this process's cluster key?)"
	}
	return " (is a node listening there? if the cluster uses a cluster key, this process needs it too: it has none)"
}

// bindFor returns the address to bind to reach host.
func bindFor(host string) string {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if host == "localhost" {
			return "127.0.0.1"
		}
		return "0.0.0.0"
	}
	switch {
	case ip.Unmap().IsLoopback() && ip.Unmap().Is4():
		return "127.0.0.1"
	case ip.IsLoopback():
		return "::1"
	case ip.Is6() && !ip.Is4In6():
		return "::"
	}
	return "0.0.0.0"
}
