// Command mars-server runs a MARS registry server.
//
//	mars-server [-config FILE] [-offline-after 3s] [-remove-after 10s] [-data DIR] [-admin HOST:PORT]
//	            [-store memory|etcd] [-etcd-endpoints URL[,URL...]]
//	            [-max-lease-ttl 1m] [-lease-hold D] [-max-kv-keys N] [-max-kv-bytes N]
//	            [-log-level info] [-log-format text] [-cpuprofile FILE]
//	mars-server -version
//	mars-server -keygen
//
// It reads the mesh configuration with config.Load (defaults, then the JSON
// file given with -config, then DIARKIS_* environment variables such as
// DIARKIS_MARS_ADDR and DIARKIS_MARS_PORT) and listens on UDP at
// marsAddress:marsPort (127.0.0.1:6789 by default; the first of a comma-separated
// marsAddress list), using retryInterval and
// retryTimeout for its transport. It logs with log/slog to stderr (text or
// JSON), starting with the address it bound. SIGINT or SIGTERM stop it
// cleanly (exit 0); with -data the shared data is saved on the way out.
//
// MARS also holds the cluster key-value store and leases (see package
// mars): with -data in DIR/kv.wal (every acknowledged change survives a
// crash), with -store etcd in etcd, otherwise in memory. -max-kv-keys and
// -max-kv-bytes bound each app's store, -max-lease-ttl the lease TTLs
// nodes may ask for. Without -data or -store, new claims are refused for
// -lease-hold (default -max-lease-ttl) after the start, since leases a
// previous run granted may still be held; -lease-hold -1s turns that off
// where no earlier MARS ran.
//
// -store etcd (or the marsStore key, DIARKIS_MARS_STORE) keeps the
// registry's state in etcd at -etcd-endpoints (marsEtcdEndpoints,
// DIARKIS_MARS_ETCD_ENDPOINTS): every mars-server over one etcd is a
// replica, any of them serves any node, and nodes list them all in
// marsAddress. etcd unreachable at start is an error (exit 1) naming the
// endpoints, after at most -etcd-dial-timeout. The default store, memory,
// keeps the state in this process.
//
// The cluster keys (meshKey, DIARKIS_MESH_KEY; meshKeyFile,
// DIARKIS_MESH_KEY_FILE) seal all of MARS's traffic, as for nodes; without
// a key, a MARS on a non-loopback address logs one warning. -keygen prints
// a new random key (base64) and exits.
//
// -admin (or the adminAddress key, DIARKIS_ADMIN_ADDRESS) opens the admin
// HTTP endpoint: /metrics, /healthz, /readyz, /v1/status, /v1/nodes,
// /v1/shared, /v1/kv, /v1/leases, the live dashboard at /, and with -pprof /debug/pprof/. A
// taken admin port fails the start before MARS listens.
//
// Exit codes, as for node: 0 success; 1 the server failed (an address
// that cannot be bound, etcd unreachable); 2 bad usage or configuration (a bad flag, a stray
// argument, a bad configuration value). Every failure prints one line on
// stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/admin"
	"github.com/marsmesh/marsmesh/internal/cli"
	"github.com/marsmesh/marsmesh/internal/version"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mars/etcdstore"
	"github.com/marsmesh/marsmesh/rudp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// stdout receives -version.
var stdout io.Writer = os.Stdout

// run is the whole program; it returns the exit code. It serves until ctx
// is done.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("mars-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad flag is reported in one line below
	configPath := fs.String("config", "", "mesh configuration `file` (JSON); DIARKIS_* environment variables override it")
	offlineAfter := fs.Duration("offline-after", 3*time.Second, "list a node offline after this long without a report")
	removeAfter := fs.Duration("remove-after", 10*time.Second, "remove a node after this long without a report")
	dataDir := fs.String("data", "", "`directory` to persist shared data in (default: memory only)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	trustAddr := fs.Bool("insecure-trust-reported-addr", false, "accept a node's report or leave from any session, not only from the address it lists (for load generators that simulate many nodes on one socket; never in production)")
	logFormat := fs.String("log-format", "text", "log format: "+cli.LogFormats)
	adminAddr := fs.String("admin", "", "serve the admin HTTP endpoint and dashboard on `host:port` (default: adminAddress of the configuration; off when empty)")
	pprofOn := fs.Bool("pprof", false, "also serve the Go profiler on the admin endpoint, under /debug/pprof/")
	storeKind := fs.String("store", "", "where the state lives: memory (this process) or etcd (replicas over etcd) (default: marsStore of the configuration, memory)")
	etcdEndpoints := fs.String("etcd-endpoints", "", "comma-separated etcd client `URLs` for -store etcd (default: marsEtcdEndpoints of the configuration)")
	etcdDial := fs.Duration("etcd-dial-timeout", 5*time.Second, "how long to wait for etcd at start")
	maxLeaseTTL := fs.Duration("max-lease-ttl", time.Minute, "the longest lease TTL nodes may claim")
	leaseHold := fs.Duration("lease-hold", 0, "without -data or -store: refuse new claims this long after start, so leases a previous run granted expire first (default: -max-lease-ttl; negative: none)")
	maxKVKeys := fs.Int("max-kv-keys", 100_000, "the most keys of one app's key-value store")
	maxKVBytes := fs.Int("max-kv-bytes", 64<<20, "the most bytes of keys and values of one app's key-value store")
	showVersion := fs.Bool("version", false, "print the version and exit")
	keygen := fs.Bool("keygen", false, "print a new random cluster key (base64, for meshKey or a meshKeyFile line) and exit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `file` until the server stops (for performance work)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mars-server [flags]\n\n"+
			"Runs the MARS registry server on UDP marsAddress:marsPort of the mesh configuration\n"+
			"(default 127.0.0.1:6789; env DIARKIS_MARS_ADDR, DIARKIS_MARS_PORT).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "mars-server: %s (see 'mars-server -h')\n", oneLine(err))
		return cli.ExitUsage
	}
	fail := func(code int, err error) int {
		fmt.Fprintln(stderr, "mars-server: "+oneLine(err))
		return code
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return cli.ExitOK
		}
		return usage(err)
	}
	if *showVersion {
		fmt.Fprintln(stdout, "mars-server", version.Get())
		return cli.ExitOK
	}
	if fs.NArg() > 0 {
		return usage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *keygen {
		k, err := rudp.GenerateKey()
		if err != nil {
			return fail(cli.ExitFail, err)
		}
		fmt.Fprintln(stdout, config.EncodeKey(k))
		return cli.ExitOK
	}
	if *offlineAfter <= 0 || *removeAfter < *offlineAfter {
		return usage(fmt.Errorf("-offline-after (%v) must be positive and -remove-after (%v) at least as long", *offlineAfter, *removeAfter))
	}
	log, err := cli.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return usage(err)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return fail(cli.ExitUsage, err)
	}
	if *adminAddr != "" {
		cfg.AdminAddress = *adminAddr
		if err := cfg.Validate(); err != nil {
			return usage(fmt.Errorf("-admin %q: %w", *adminAddr, err))
		}
	}
	if *storeKind != "" || *etcdEndpoints != "" {
		if *storeKind != "" {
			cfg.MarsStore = *storeKind
		}
		if *etcdEndpoints != "" {
			cfg.MarsEtcdEndpoints = *etcdEndpoints
		}
		if err := cfg.Validate(); err != nil {
			return usage(fmt.Errorf("-store %q -etcd-endpoints %q: %w", cfg.MarsStore, cfg.MarsEtcdEndpoints, err))
		}
	}
	if cfg.MarsStore == config.StoreEtcd && *dataDir != "" {
		return usage(errors.New("-data is for the memory store (with -store etcd, etcd keeps the data)"))
	}
	cli.WarnUnknownEnv(log)
	var admLn net.Listener // bound before MARS listens: a taken port fails before any node registers
	if cfg.AdminAddress != "" {
		if admLn, err = admin.Listen(cfg.AdminAddress); err != nil {
			return fail(cli.ExitFail, err)
		}
		defer admLn.Close() // in case of an early return; the endpoint closes it too
	}
	keys, err := cfg.Keys() // Load checked them; the key file may have changed since
	if err != nil {
		return fail(cli.ExitUsage, err)
	}
	store, err := openStore(cfg, *etcdDial, *removeAfter, log)
	if err != nil {
		return fail(cli.ExitFail, err)
	}
	if store != nil {
		defer store.Close()
	}
	srv, err := mars.Listen(cfg.MarsAddr(), mars.ServerOptions{
		OfflineAfter: *offlineAfter,
		RemoveAfter:  *removeAfter,
		DataDir:      *dataDir,
		Store:        store,
		Logger:       log,

		TrustReportedAddr: *trustAddr,
		MaxLeaseTTL:       *maxLeaseTTL,
		LeaseHold:         *leaseHold,
		MaxKVKeys:         *maxKVKeys,
		MaxKVBytes:        *maxKVBytes,
		Transport: rudp.Config{
			RetryInterval: cfg.RetryIntervalDuration(),
			RetryTimeout:  cfg.RetryTimeoutDuration(),
			Keys:          keys,
		},
	})
	if err != nil {
		return fail(cli.ExitFail, err)
	}
	if len(keys) == 0 && !srv.Addr().Addr().Unmap().IsLoopback() {
		log.Warn("no cluster key (meshKey, meshKeyFile): traffic on this non-loopback address is neither "+
			"authenticated nor encrypted; anyone who reaches the port can register, read and send", "addr", srv.Addr().String())
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			srv.Close()
			return fail(cli.ExitFail, err)
		}
		defer stop()
	}
	if admLn != nil {
		opts := admin.MarsOptions(srv, cfg.AdminAddress)
		opts.Logger, opts.Listener, opts.Pprof = log, admLn, *pprofOn
		adm, err := admin.Start(opts)
		if err != nil {
			srv.Close()
			return fail(cli.ExitFail, err)
		}
		defer adm.Close()
		log.Info("admin endpoint listening", "addr", adm.Addr(), "dashboard", "http://"+adm.Addr()+"/")
	}
	log.Info("mars-server listening", "addr", srv.Addr().String(), "incarnation", fmt.Sprintf("%016x", srv.Incarnation()),
		"offlineAfter", *offlineAfter, "removeAfter", *removeAfter, "data", *dataDir, "store", cfg.MarsStore, "keys", len(keys))
	<-ctx.Done()
	log.Info("mars-server stopping")
	if err := srv.Close(); err != nil {
		log.Error("mars-server: closing", "err", err)
		return 1
	}
	log.Info("mars-server stopped")
	return 0
}

// openStore opens the etcd store when the configuration asks for it; nil
// means the memory store.
func openStore(cfg config.Mesh, dial, removeAfter time.Duration, log *slog.Logger) (mars.Store, error) {
	if cfg.MarsStore != config.StoreEtcd {
		return nil, nil
	}
	st, err := etcdstore.New(etcdstore.Options{
		Endpoints:   cfg.MarsEtcdEndpointList(),
		DialTimeout: dial,
		SessionTTL:  removeAfter,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("mars-server: state in etcd", "endpoints", cfg.MarsEtcdEndpoints, "id", fmt.Sprintf("%016x", st.ID()))
	return st, nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}
