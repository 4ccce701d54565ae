package main

import (
	"log/slog"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mesh"
)

// startGuest starts a guest node: it can send and sync the view, but MARS
// never lists it. It binds any free port, never cfg.Port: a status query or
// a probe must not take the port a node is about to start on.
func startGuest(cfg config.Mesh, app string, log *slog.Logger, extra ...mesh.Option) (*mesh.Node, error) {
	cfg.Port = "0"
	opts := append([]mesh.Option{mesh.AsGuest(), mesh.WithLogger(log)}, extra...)
	if app != "" {
		opts = append(opts, mesh.WithApp(app))
	}
	return mesh.New(cfg, opts...)
}

// stopGuest shuts a guest down but waits at most d: with MARS down, the
// transport's close would wait for a handshake that never completes. The
// process exits right after, which closes the socket anyway.
func stopGuest(n *mesh.Node, d time.Duration) {
	done := make(chan struct{})
	go func() {
		n.Shutdown()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
