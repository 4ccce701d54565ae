package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mesh"
)

// The key-value store and leases from the command line: node kv get, put,
// ls and rm, and node lease ls. Each joins as a guest (never listed), does
// one thing and leaves.

// kvFlags are the flags every kv and lease subcommand takes.
type kvFlags struct {
	configPath, marsAddr, app *string
	timeout                   *time.Duration
	newLog                    func(w io.Writer) (*slog.Logger, error)
}

func addKVFlags(fs *flag.FlagSet) *kvFlags {
	f := &kvFlags{
		configPath: fs.String("config", "", "mesh configuration `file` (JSON); empty: defaults. DIARKIS_* environment variables override both"),
		marsAddr:   fs.String("mars", "", "MARS `host:port` (default: marsAddress:marsPort of the configuration, 127.0.0.1:6789)"),
		app:        fs.String("app", "", "app `name` (MARS namespace) (default: the default namespace)"),
		timeout:    fs.Duration("timeout", 5*time.Second, "how long to wait for MARS"),
	}
	f.newLog = logFlags(fs, "error", " of the guest node (stderr)")
	return f
}

// kvGuest starts a guest from the flags and waits for its first sync; it
// returns the exit code to return at once when it fails.
func kvGuest(ctx context.Context, name string, f *kvFlags, stderr io.Writer) (*mesh.Node, int) {
	if *f.timeout <= 0 {
		return nil, usageError(stderr, name, fmt.Errorf("-timeout %v: must be positive", *f.timeout))
	}
	log, err := f.newLog(stderr)
	if err != nil {
		return nil, usageError(stderr, name, err)
	}
	cfg, err := config.Load(*f.configPath)
	if err != nil {
		return nil, badConfig(stderr, name, err)
	}
	if *f.marsAddr != "" {
		host, port, err := net.SplitHostPort(*f.marsAddr)
		if err != nil {
			return nil, usageError(stderr, name, fmt.Errorf("-mars %q: want host:port", *f.marsAddr))
		}
		cfg.MarsAddress, cfg.MarsPort = host, port
		if err := cfg.Validate(); err != nil {
			return nil, badConfig(stderr, name, fmt.Errorf("-mars %q: %w", *f.marsAddr, err))
		}
	}
	g, err := startGuest(cfg, *f.app, log, mesh.WithSyncInterval(statusSyncInterval))
	if err != nil {
		return nil, failure(stderr, name, err)
	}
	t := time.NewTimer(*f.timeout)
	defer t.Stop()
	select {
	case <-g.Ready():
		return g, -1
	case <-t.C:
		err = fmt.Errorf("MARS at %s did not answer within %v (is mars-server running there, with this cluster key or none? see -mars)",
			strings.Join(cfg.MarsAddrs(), ","), *f.timeout)
	case <-ctx.Done():
		err = errors.New("interrupted")
	}
	stopGuest(g, 500*time.Millisecond)
	return nil, failure(stderr, name, err)
}

// cmdKV dispatches node kv ACTION.
func cmdKV(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	actions := map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"get": kvGet, "put": kvPut, "ls": kvLs, "rm": kvRm,
	}
	if len(args) == 0 || actions[args[0]] == nil {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprint(stdout, kvUsage)
			return exitOK
		}
		fmt.Fprint(stderr, kvUsage)
		return exitUsage
	}
	return actions[args[0]](ctx, args[1:], stdout, stderr)
}

const kvUsage = `Usage: node kv get|put|ls|rm [flags] ARGS

The cluster key-value store held by MARS (per app), from a guest node:

  node kv get KEY                 print the value (to stdout, as is) and its revision (stderr)
  node kv put KEY VALUE           set KEY; -ttl removes it after that long, -rev N only if it is at revision N (0: absent)
  node kv ls [PREFIX]             list keys, revisions, sizes and values (text up to 60 bytes)
  node kv rm KEY                  delete KEY; -rev N only if it is at revision N

Run 'node kv ACTION -h' for the flags. Exit codes: 0 ok, 1 failed (not found, revision conflict, MARS down), 2 bad usage.
`

// kvCommand parses the flags of node kv ACTION and starts the guest.
func kvCommand(ctx context.Context, name, synopsis, about string, args []string, nargs [2]int, stdout, stderr io.Writer,
	extra func(fs *flag.FlagSet)) (g *mesh.Node, pos []string, code int) {
	fs := newFlagSet(name, synopsis, about)
	f := addKVFlags(fs)
	if extra != nil {
		extra(fs)
	}
	// Flags may come before or after the arguments.
	var rest []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fs.Usage()
				return nil, nil, exitOK
			}
			return nil, nil, usageError(stderr, fs.Name(), err)
		}
		args = fs.Args()
		if len(args) > 0 {
			rest, args = append(rest, args[0]), args[1:]
		}
	}
	if len(rest) < nargs[0] || len(rest) > nargs[1] {
		return nil, nil, usageError(stderr, fs.Name(), fmt.Errorf("want %s", synopsis))
	}
	g, code = kvGuest(ctx, fs.Name(), f, stderr)
	return g, rest, code
}

func kvGet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g, pos, code := kvCommand(ctx, "kv get", "KEY [flags]", "Prints the value of KEY as is, and its revision on stderr.", args, [2]int{1, 1}, stdout, stderr, nil)
	if g == nil {
		return code
	}
	defer stopGuest(g, 500*time.Millisecond)
	e, err := g.KV().Get(ctx, pos[0])
	if err != nil {
		return failure(stderr, "node kv get", err)
	}
	stdout.Write(e.Value)
	if utf8.Valid(e.Value) && !strings.HasSuffix(string(e.Value), "\n") && len(e.Value) > 0 {
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stderr, "revision %d\n", e.Rev)
	return exitOK
}

func kvPut(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var ttl *time.Duration
	var rev *int64
	g, pos, code := kvCommand(ctx, "kv put", "KEY VALUE [flags]", "Sets KEY to VALUE and prints the new revision.", args, [2]int{2, 2}, stdout, stderr,
		func(fs *flag.FlagSet) {
			ttl = fs.Duration("ttl", 0, "remove the key this long after the put (0: never)")
			rev = fs.Int64("rev", -1, "compare-and-swap: put only if the key is at this revision (0: only if absent; -1: always)")
		})
	if g == nil {
		return code
	}
	defer stopGuest(g, 500*time.Millisecond)
	opts := mesh.PutOptions{TTL: *ttl}
	if *rev >= 0 {
		opts.CAS, opts.Rev = true, *rev
	}
	r, err := g.KV().Put(ctx, pos[0], []byte(pos[1]), opts)
	if err != nil {
		return failure(stderr, "node kv put", err)
	}
	fmt.Fprintf(stdout, "revision %d\n", r)
	return exitOK
}

func kvRm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var rev *int64
	g, pos, code := kvCommand(ctx, "kv rm", "KEY [flags]", "Deletes KEY.", args, [2]int{1, 1}, stdout, stderr,
		func(fs *flag.FlagSet) {
			rev = fs.Int64("rev", -1, "compare-and-swap: delete only if the key is at this revision (-1: always)")
		})
	if g == nil {
		return code
	}
	defer stopGuest(g, 500*time.Millisecond)
	opts := mesh.DeleteOptions{}
	if *rev >= 0 {
		opts.CAS, opts.Rev = true, *rev
	}
	r, err := g.KV().Delete(ctx, pos[0], opts)
	if err != nil {
		return failure(stderr, "node kv rm", err)
	}
	fmt.Fprintf(stdout, "deleted at revision %d\n", r)
	return exitOK
}

func kvLs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g, pos, code := kvCommand(ctx, "kv ls", "[PREFIX] [flags]", "Lists the keys under PREFIX (all without one).", args, [2]int{0, 1}, stdout, stderr, nil)
	if g == nil {
		return code
	}
	defer stopGuest(g, 500*time.Millisecond)
	list, rev, err := g.KV().List(ctx, strings.Join(pos, ""))
	if err != nil {
		return failure(stderr, "node kv ls", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tREVISION\tBYTES\tVALUE")
	for _, e := range list {
		v := "(binary)"
		if utf8.Valid(e.Value) {
			v = strconv.Quote(string(e.Value[:min(len(e.Value), 60)]))
			if len(e.Value) > 60 {
				v += "…"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", e.Key, e.Rev, len(e.Value), v)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%s at revision %d\n", plural(len(list), "key"), rev)
	return exitOK
}

// cmdLease dispatches node lease ACTION.
func cmdLease(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "ls" {
		w, c := stderr, exitUsage
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			w, c = stdout, exitOK
		}
		fmt.Fprint(w, "Usage: node lease ls [PREFIX] [flags]\n\nLists the leases MARS holds (per app): name, holder, fencing token.\n")
		return c
	}
	g, pos, code := kvCommand(ctx, "lease ls", "[PREFIX] [flags]", "Lists the leases under PREFIX: name, holder, fencing token.",
		args[1:], [2]int{0, 1}, stdout, stderr, nil)
	if g == nil {
		return code
	}
	defer stopGuest(g, 500*time.Millisecond)
	list, err := g.ListLeases(ctx, strings.Join(pos, "")) // the prefix, or ""

	if err != nil {
		return failure(stderr, "node lease ls", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tHOLDER\tTOKEN")
	for _, l := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", l.Key, l.Holder, l.Token)
	}
	tw.Flush()
	fmt.Fprintln(stdout, plural(len(list), "lease"))
	return exitOK
}
