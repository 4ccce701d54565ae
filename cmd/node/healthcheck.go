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
)

// cmdHealthcheck sends the mesh health-check request to one node. It does
// not wait for MARS (the health check needs none), so it answers in about
// one round trip, with MARS up or down.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("healthcheck", "-addr HOST:PORT [-timeout 5s]",
		"Sends the mesh health-check request to the node at -addr (its mesh address) and\n"+
			"exits 0 if it answers within -timeout, 1 if not: a Kubernetes liveness or startup\n"+
			"probe. It binds a free port of its own and needs no MARS.")
	addr := fs.String("addr", "", "mesh `host:port` of the node to check (required)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	configPath := fs.String("config", "", "mesh configuration `file` (JSON); empty: defaults. DIARKIS_* environment variables override both")
	newLog := logFlags(fs, "error", " (stderr)")
	quiet := fs.Bool("q", false, "print nothing on success")
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
	if err := g.HealthCheck(cctx, *addr); err != nil {
		return failure(stderr, name, fmt.Errorf("%s did not answer within %v: %w", *addr, *timeout, err))
	}
	if !*quiet {
		fmt.Fprintf(stdout, "ok: %s answered in %v\n", *addr, time.Since(start).Round(time.Microsecond))
	}
	return exitOK
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
