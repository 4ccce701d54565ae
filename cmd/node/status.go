package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

// statusSyncInterval is how often the status guest syncs while it runs.
const statusSyncInterval = 100 * time.Millisecond

// cmdStatus joins as a guest, waits for the first sync and prints the view.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[-mars HOST:PORT] [-app NAME] [flags]",
		"Joins the cluster as a guest (never listed), waits for the first sync with MARS and\n"+
			"prints every node by type (role, status, mesh address, public endpoint, values)\n"+
			"and the shared data. Exits 1 if MARS does not answer within -timeout.")
	configPath := fs.String("config", "", "mesh configuration `file` (JSON); empty: defaults. DIARKIS_* environment variables override both")
	marsAddr := fs.String("mars", "", "MARS `host:port` (default: marsAddress:marsPort of the configuration, 127.0.0.1:6789)")
	app := fs.String("app", "", "app `name` (MARS namespace) to show (default: the default namespace)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for MARS to answer")
	newLog := logFlags(fs, "error", " of the guest node (stderr)")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	name := fs.Name()
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
	if *marsAddr != "" {
		host, port, err := net.SplitHostPort(*marsAddr)
		if err != nil {
			return usageError(stderr, name, fmt.Errorf("-mars %q: want host:port", *marsAddr))
		}
		cfg.MarsAddress, cfg.MarsPort = host, port
		if err := cfg.Validate(); err != nil {
			return badConfig(stderr, name, fmt.Errorf("-mars %q: %w", *marsAddr, err))
		}
	}
	// A short sync interval: the guest waits for two syncs after the first.
	g, err := startGuest(cfg, *app, log, mesh.WithSyncInterval(statusSyncInterval))
	if err != nil {
		return failure(stderr, name, err)
	}
	defer stopGuest(g, 500*time.Millisecond)

	t := time.NewTimer(*timeout)
	defer t.Stop()
	select {
	case <-g.Ready():
	case <-t.C:
		marsAddrs := strings.Join(cfg.MarsAddrs(), ",")
		err := fmt.Errorf("MARS at %s did not answer within %v (is mars-server running there, with this cluster key or none? see -mars)", marsAddrs, *timeout)
		if last := g.Mars().LastError(); last != nil {
			err = fmt.Errorf("MARS at %s refused the guest: %w", marsAddrs, last)
		}
		return failure(stderr, name, err)
	case <-ctx.Done():
		return failure(stderr, name, errors.New("interrupted"))
	}
	// MARS may answer a first contact with a full snapshot up to a moment
	// old (it reuses one across a burst of registrations); the syncs after
	// it bring the changes since.
	wctx, cancel := context.WithTimeout(ctx, 5*statusSyncInterval)
	defer cancel()
	g.Mars().WaitForLatestNodeDataContext(wctx)
	v := g.Mars().View()
	printStatus(stdout, g.Mars().Replicas(), *app, v.Nodes(), v.AllSharedData())
	return exitOK
}

// printStatus writes the cluster as a guest sees it, and with several MARS
// replicas the state of each.
func printStatus(w io.Writer, replicas []mars.ReplicaStatus, app string, nodes []mars.Node, shared map[string]int16) {
	appName := strconv.Quote(app)
	if app == "" {
		appName = `"" (default)`
	}
	marsAddr := "-"
	for i, r := range replicas {
		if r.State == mars.ReplicaInUse || r.State == mars.ReplicaSilent {
			marsAddr = r.Addr
			if len(replicas) > 1 {
				marsAddr += fmt.Sprintf(" (replica %d of %d)", i+1, len(replicas))
			}
		}
	}
	byType := map[string][]mars.Node{}
	for _, n := range nodes {
		byType[n.Type] = append(byType[n.Type], n)
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintf(w, "MARS %s, app %s: %s, %s\n", marsAddr, appName,
		plural(len(nodes), "node"), plural(len(shared), "shared data key"))
	if len(replicas) > 1 {
		fmt.Fprintln(w, "\nMARS replicas, as this status command sees them:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ADDRESS\tSTATE\tLAST ANSWER")
		for _, r := range replicas {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Addr, replicaState(r), msAgo(r.LastAnswerMs))
		}
		tw.Flush()
	}
	for _, typ := range types {
		list := byType[typ]
		sort.Slice(list, func(i, j int) bool { return list[i].Addr < list[j].Addr })
		fmt.Fprintf(w, "\ntype %s: %s\n", typ, plural(len(list), "node"))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ADDRESS\tROLE\tSTATUS\tENDPOINT\tVALUES")
		for _, n := range list {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", n.Addr, dash(n.Role), n.Status, dash(n.EndPoint), formatValues(n.Values))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	if len(shared) == 0 {
		fmt.Fprintln(w, "shared data: none")
		return
	}
	keys := make([]string, 0, len(shared))
	for k := range shared {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "shared data:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tVALUE")
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%d\n", k, shared[k])
	}
	tw.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatValues prints metadata as k=v pairs sorted by key; strings that
// are empty or hold spaces are quoted.
func formatValues(vals map[string]interface{}) string {
	if len(vals) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := fmt.Sprint(vals[k])
		if s, ok := vals[k].(string); ok && (s == "" || strings.ContainsAny(s, " \t\n=\"")) {
			v = strconv.Quote(s)
		}
		parts[i] = k + "=" + v
	}
	return strings.Join(parts, " ")
}

// replicaState describes a MARS replica's state in words.
func replicaState(r mars.ReplicaStatus) string {
	switch r.State {
	case mars.ReplicaFailed:
		return fmt.Sprintf("failed: no answer (left it %s)", msAgo(r.FailedMs))
	case mars.ReplicaSilent:
		return "in use, silent"
	}
	return r.State
}

// msAgo writes a time in milliseconds before now; -1 is never.
func msAgo(ms int64) string {
	switch {
	case ms < 0:
		return "never"
	case ms == 0:
		return "just now"
	}
	return (time.Duration(ms) * time.Millisecond).String() + " ago"
}
