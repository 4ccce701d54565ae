package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/admin"
	"github.com/marsmesh/marsmesh/mesh"
)

// cmdRun joins the cluster through the package-level mesh API, the way a
// game server embeds it, and serves until ctx ends.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "[-config FILE] [-type TYPE] [flags]",
		"Joins the cluster as a node (mesh.Setup), serves the example handlers (echo RPC 1,\n"+
			"stats RPC 2, counter command 10, broadcast receiver command 11), logs its mesh\n"+
			"address and leaves cleanly on SIGINT or SIGTERM (mesh.ShutdownOnSignal: offline at\n"+
			"MARS first, then running handlers finish; exit 0).")
	configPath := fs.String("config", "", "mesh configuration `file` (JSON); empty: defaults. DIARKIS_* environment variables override both")
	typ := fs.String("type", "game", "node `type` listed in MARS")
	role := fs.String("role", "", "node `role` listed in MARS (e.g. UDP, TCP, DGS, HTTP)")
	endpoint := fs.String("endpoint", "", "public `host:port` game clients use, listed in MARS")
	app := fs.String("app", "", "app `name`: the MARS namespace (default: the default namespace)")
	values := valuesFlag{}
	fs.Var(values, "value", "metadata `k=v` listed in MARS; repeatable; v is an integer, true/false, or else a string")
	newLog := logFlags(fs, "info", "")
	adminAddr := fs.String("admin", "", "serve the admin HTTP endpoint (metrics, probes, status) on `host:port` (default: adminAddress of the configuration; off when empty)")
	pprofOn := fs.Bool("pprof", false, "also serve the Go profiler on the admin endpoint, under /debug/pprof/")
	traceFile := fs.String("trace-file", "", "trace every request, message and stream (OpenTelemetry, every span sampled) and append the spans to `file`, one JSON object a line")
	var subscribe patternsFlag
	fs.Var(&subscribe, "subscribe", "subscribe to a pub-sub topic `pattern` (e.g. chat.>) once joined, counting the messages (logged at debug level); repeatable")
	events := fs.Bool("events", false, "log every membership event the node sees (mesh.OnNodeEvent: a node joining, online, draining, offline, gone), one info line each")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	name := fs.Name()
	if *typ == "" {
		return usageError(stderr, name, errors.New("-type must not be empty"))
	}
	if *endpoint != "" {
		if _, _, err := net.SplitHostPort(*endpoint); err != nil {
			return usageError(stderr, name, fmt.Errorf("-endpoint %q: want host:port", *endpoint))
		}
	}
	log, err := newLog(stderr)
	if err != nil {
		return usageError(stderr, name, err)
	}
	cfg, err := config.Load(*configPath) // mesh.Setup loads it again; this check makes a bad one exit 2
	if err != nil {
		return badConfig(stderr, name, err)
	}
	if *adminAddr != "" {
		cfg.AdminAddress = *adminAddr
		if err := cfg.Validate(); err != nil {
			return usageError(stderr, name, fmt.Errorf("-admin %q: %w", *adminAddr, err))
		}
	}
	slog.SetDefault(log)   // the default node logs through slog.Default(); Setup warns about unknown DIARKIS_* names
	var admLn net.Listener // bound before the node joins: a taken port fails here, not after registering
	if cfg.AdminAddress != "" {
		if admLn, err = admin.Listen(cfg.AdminAddress); err != nil {
			return failure(stderr, name, err)
		}
		defer admLn.Close() // in case Setup fails; the endpoint closes it too
	}

	if *traceFile != "" {
		tp, err := openTraceFile(*traceFile)
		if err != nil {
			return usageError(stderr, name, err)
		}
		defer tp.Shutdown(context.Background()) // after the node's shutdown: its last spans are written
		mesh.SetTracerProvider(tp)
	}

	// Everything set before Setup applies to the node Setup makes.
	h := newHandlers(log)
	if !h.register(meshDefault{}) {
		return failure(stderr, name, errors.New("example handler IDs already taken"))
	}
	mesh.SetNodeType(*typ)
	if *role != "" {
		mesh.SetNodeRole(*role)
	}
	if *endpoint != "" {
		mesh.SetEndPoint(*endpoint)
	}
	if *app != "" {
		mesh.SetAppName(*app)
	}
	for _, k := range values.keys() {
		mesh.SetNodeValue(k, values[k])
	}
	if *events {
		mesh.OnNodeEvent(func(ev mesh.NodeEvent) {
			log.Info("node event", "node", ev.Addr, "inc", strconv.FormatUint(ev.Incarnation, 10), "type", ev.Type,
				"old", ev.Old.String(), "new", ev.New.String(), "reason", string(ev.Reason))
		})
	}
	if err := mesh.Setup(*configPath); err != nil {
		return failure(stderr, name, err)
	}
	// SIGINT/SIGTERM (or the end of ctx) starts the shutdown; shutDown
	// receives its result.
	shutDown := mesh.ShutdownOnSignalContext(ctx, os.Interrupt, syscall.SIGTERM)
	addr := mesh.GetMyEndPoint()
	keys, _ := cfg.Keys() // Setup checked them
	log.Info("node started", "addr", addr, "type", *typ, "role", *role,
		"endpoint", *endpoint, "mars", strings.Join(cfg.MarsAddrs(), ","), "keys", len(keys))
	if admLn != nil {
		opts := admin.NodeOptions(mesh.Default(), cfg.AdminAddress, strings.Join(cfg.MarsAddrs(), ","))
		opts.Logger, opts.Listener, opts.Pprof = log, admLn, *pprofOn
		adm, err := admin.Start(opts)
		if err != nil {
			mesh.Shutdown()
			return failure(stderr, name, err)
		}
		defer adm.Close()
		log.Info("admin endpoint listening", "addr", adm.Addr())
	}

	warn := time.NewTimer(5 * time.Second)
	defer warn.Stop()
	ready := mesh.Default().Ready()
	for ready != nil {
		select {
		case <-ready:
			log.Info("joined the cluster", "addr", addr)
			ready = nil
		case <-warn.C:
			log.Warn("MARS has not answered yet; still trying", "mars", strings.Join(cfg.MarsAddrs(), ","))
		case <-ctx.Done():
			ready = nil
		}
	}
	var topicMsgs atomic.Uint64
	for _, p := range subscribe {
		if ctx.Err() != nil {
			break
		}
		if _, err := mesh.Subscribe(p, func(m *mesh.Message) {
			topicMsgs.Add(1)
			log.Debug("topic message", "topic", m.Topic, "from", m.From, "bytes", len(m.Payload))
		}); err != nil {
			mesh.Shutdown()
			return failure(stderr, name, err)
		}
		log.Info("subscribed", "pattern", p)
	}
	<-ctx.Done() // the same signals end ctx (see main)
	log.Info("stopping", "addr", addr)
	if err := <-shutDown; err != nil {
		log.Error("shutdown", "err", err)
		return exitFail
	}
	total, msgs := h.counter()
	log.Info("stopped", "counterTotal", total, "counterMessages", msgs, "broadcasts", h.broadcasts.Load(), "topicMessages", topicMsgs.Load())
	return exitOK
}

// valuesFlag collects repeated -value k=v flags.
type valuesFlag map[string]interface{}

func (v valuesFlag) String() string {
	parts := make([]string, 0, len(v))
	for _, k := range v.keys() {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v[k]))
	}
	return strings.Join(parts, ",")
}

func (v valuesFlag) Set(s string) error {
	k, val, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want k=v", s)
	}
	v[k] = parseValue(val)
	return nil
}

func (v valuesFlag) keys() []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseValue types a -value: an integer, true or false, or else a string.
func parseValue(s string) interface{} {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	return s
}

// patternsFlag collects repeated -subscribe patterns.
type patternsFlag []string

func (f *patternsFlag) String() string { return strings.Join(*f, ",") }

func (f *patternsFlag) Set(v string) error {
	*f = append(*f, v)
	return nil
}
