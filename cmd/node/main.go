// Command node is a ready-made game-server node on the marsmesh mesh, and a
// one-command local cluster demo.
//
//	node run -type TYPE [-config FILE] [-role ROLE] [-endpoint HOST:PORT] [-value k=v ...] [-admin HOST:PORT]
//	node demo [-nodes 5] [-key]
//	node status [-mars HOST:PORT] [-app NAME] [-timeout 5s]
//	node healthcheck -addr HOST:PORT [-timeout 5s]
//	node kv get KEY | put KEY VALUE [-ttl D] [-rev N] | ls [PREFIX] | rm KEY [-rev N]
//	node lease ls [PREFIX]
//	node keygen
//	node version (or node -version)
//
// run joins the cluster with mesh.Setup, serves the example handlers
// (handlers.go) and leaves cleanly on SIGINT or SIGTERM. demo starts a MARS
// and a small cluster on 127.0.0.1 in one process (plus one child process
// it kills), exercises every kind of message and prints a report. status
// joins as a guest and prints what MARS lists. kv and lease join as a
// guest and read or change the cluster key-value store, or list the
// leases. healthcheck sends the mesh
// health-check request to one node: a liveness or startup probe. keygen
// prints a new random cluster key. version prints the module version and
// VCS revision. run, status and healthcheck log with log/slog to stderr
// (-log-format text or json).
//
// run -admin HOST:PORT (or the adminAddress key, DIARKIS_ADMIN_ADDRESS)
// opens the node's admin HTTP endpoint: /metrics, /healthz, /readyz
// (ready while in touch with MARS), /v1/status, and with -pprof
// /debug/pprof/. A taken admin port fails the start before the node joins.
//
// The mesh configuration comes from config.Load: defaults, then the JSON
// file given with -config, then DIARKIS_* environment variables. run,
// status and healthcheck use its cluster keys (meshKey, meshKeyFile): a
// cluster with a key answers none of them without it.
//
// Exit codes: 0 success; 1 the command ran and failed (a demo step failed,
// MARS did not answer, the node did not answer the health check, the port
// could not be bound); 2 bad usage (unknown subcommand, bad flag, bad
// configuration), with a one-line reason on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/marsmesh/marsmesh/internal/cli"
	"github.com/marsmesh/marsmesh/internal/version"
)

const (
	exitOK    = cli.ExitOK
	exitFail  = cli.ExitFail
	exitUsage = cli.ExitUsage
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand: it runs until done or ctx ends and returns
// the exit code.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	hidden  bool
}

func commands() []command {
	return []command{
		{name: "run", summary: "join the cluster as a game-server node and serve until SIGINT/SIGTERM", run: cmdRun},
		{name: "demo", summary: "start MARS and a local cluster, exercise every capability, print a report", run: cmdDemo},
		{name: "status", summary: "join as a guest and print the cluster: nodes by type, and the shared data", run: cmdStatus},
		{name: "kv", summary: "the cluster key-value store: kv get KEY, kv put KEY VALUE, kv ls [PREFIX], kv rm KEY", run: cmdKV},
		{name: "lease", summary: "the leases MARS holds: lease ls [PREFIX]", run: cmdLease},
		{name: "healthcheck", summary: "ask one node whether it is serving (exit 0 if it answers in time)", run: cmdHealthcheck},
		{name: "keygen", summary: "print a new random cluster key (base64) for meshKey or meshKeyFile", run: cmdKeygen},
		{name: "version", summary: "print the module version and VCS revision", run: cmdVersion},
		{name: demoNodeCmd, run: cmdDemoNode, hidden: true},
	}
}

// realMain dispatches to a subcommand and returns the exit code.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		return cmdVersion(ctx, args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "node: unknown subcommand %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Usage: node <subcommand> [flags]\n\nA game-server node on the marsmesh mesh.\n\nSubcommands:\n")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprint(w, "\nRun 'node <subcommand> -h' for its flags. Exit codes: 0 ok, 1 failed, 2 bad usage or configuration.\n")
}

// newFlagSet makes a flag set that prints nothing by itself: parse prints
// the usage for -h and a one-line reason for anything wrong.
func newFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("node "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: node %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; when it returns false the command must return code
// at once (0 after -h, 2 after a bad flag or a stray argument).
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK, false
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		return usageError(stderr, fs.Name(), err), false
	}
	return exitOK, true
}

// usageError prints a one-line reason and returns exitUsage.
func usageError(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %s (see '%s -h')\n", name, oneLine(err), name)
	return exitUsage
}

// badConfig prints a one-line reason for a configuration that does not
// load or validate, and returns exitUsage.
func badConfig(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err))
	return exitUsage
}

// failure prints a one-line reason and returns exitFail.
func failure(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err))
	return exitFail
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// newLogger returns a text logger to w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	return cli.NewLogger(w, level, "text")
}

// logFlags adds -log-level (default level) and -log-format to fs; the
// function it returns builds the logger they ask for.
func logFlags(fs *flag.FlagSet, level, about string) func(w io.Writer) (*slog.Logger, error) {
	l := fs.String("log-level", level, "log `level`"+about+": debug, info, warn or error")
	f := fs.String("log-format", "text", "log `format`: "+cli.LogFormats)
	return func(w io.Writer) (*slog.Logger, error) { return cli.NewLogger(w, *l, *f) }
}

// cmdVersion prints the version recorded in the binary.
func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", "Prints the module version and VCS revision this binary was built from.")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	fmt.Fprintln(stdout, "node", version.Get())
	return exitOK
}
