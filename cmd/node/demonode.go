package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
)

// demoNodeCmd is the hidden subcommand the demo starts as a child process:
// a node with the demo's short liveness settings, which the demo kills
// with SIGKILL to show a crash. It prints its mesh address on stdout once
// it has synced, and exits when its stdin closes (so it never outlives
// the demo, however the demo ends) or on SIGINT/SIGTERM.
const demoNodeCmd = "demo-node"

func cmdDemoNode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(demoNodeCmd, "-mars HOST:PORT", "Internal: the child node of 'node demo'.")
	marsAddr := fs.String("mars", "", "MARS `host:port`")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	name := fs.Name()
	host, port, err := net.SplitHostPort(*marsAddr)
	if err != nil {
		return usageError(stderr, name, fmt.Errorf("-mars %q: want host:port", *marsAddr))
	}
	cfg := demoConfig(host, port)
	cfg.MeshKey = os.Getenv(demoKeyEnv) // the demo's key, if it runs with -key
	log, _ := newLogger(stderr, "warn")
	n, err := mesh.New(cfg, mesh.WithType(demoType), mesh.WithLogger(log), mesh.WithSyncInterval(demoSyncInterval),
		mesh.WithValues(map[string]interface{}{"process": "child", "pid": int64(os.Getpid())}))
	if err != nil {
		return failure(stderr, name, err)
	}
	defer n.Shutdown()
	newHandlers(log).register(n)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin) // returns when the demo closes the pipe or dies
		cancel()
	}()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-n.Ready():
	case <-t.C:
		return failure(stderr, name, errors.New("MARS did not answer within 10s"))
	case <-ctx.Done():
		return exitOK
	}
	fmt.Fprintln(stdout, n.GetMyEndPoint())
	<-ctx.Done()
	return exitOK
}
