package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
)

// churnDriver keeps a cluster busy the way a game server does: RPCs to
// nodes picked from GetNodeAddressesByType, and SendMany to the whole
// list, and records how each call ended and how long it took.
type churnDriver struct {
	n    *mesh.Node
	typ  string
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	ok       int             // RPCs answered
	okTook   []time.Duration // how long each answered RPC took
	fanouts  int             // fan-outs that reached every node
	draining []churnCall     // RPCs refused with ErrDraining
	failed   []string        // every other outcome
	over     int             // RPCs and fan-outs that took more than stallLimit
	slowest  []churnCall     // the slowest RPCs and fan-outs
	late     []churnCall     // the latest wake-ups of the driver's pacer (the process's own stalls)
}

// churnCall is one call as the driver timed it.
type churnCall struct {
	what string
	at   time.Time
	took time.Duration
}

// keepSlowest is how many of the slowest calls the driver keeps.
const keepSlowest = 5

// stallLimit is the bound on one call or fan-out: calls that take
// longer are counted (a loaded 2-core machine stalls whole processes for
// longer, so the test reports the count and does not assert on it).
const stallLimit = 100 * time.Millisecond

const (
	churnPace    = 5 * time.Millisecond  // between two calls of one RPC caller
	churnFanPace = 10 * time.Millisecond // between two fan-outs
	churnMaxOps  = 100_000               // per caller: a bound on count besides stop
)

// start runs callers RPC callers and one fan-out caller until halt.
func (d *churnDriver) start(callers int) {
	d.stop = make(chan struct{})
	for range callers {
		d.wg.Go(d.callRPCs)
	}
	d.wg.Go(d.fanOut)
	d.wg.Go(d.watchStalls)
}

// halt stops the callers and waits for them.
func (d *churnDriver) halt() {
	close(d.stop)
	d.wg.Wait()
}

// pace waits before the next call; it reports false once halted.
func (d *churnDriver) pace(every time.Duration) bool {
	t := time.NewTimer(every)
	defer t.Stop()
	select {
	case <-d.stop:
		return false
	case <-t.C:
		return true
	}
}

func (d *churnDriver) callRPCs() {
	payload := []byte("churn")
	for i := 0; i < churnMaxOps && d.pace(churnPace); i++ {
		games := d.n.GetNodeAddressesByType(d.typ)
		if len(games) == 0 {
			d.fail("empty list of %s nodes", d.typ)
			continue
		}
		addr := games[rand.IntN(len(games))]
		ctx, cancel := context.WithTimeout(context.Background(), mesh.DefaultRPCTimeout)
		start := time.Now()
		_, err := d.n.SendRPCWithContext(ctx, cmdEcho, addr, payload)
		took := time.Since(start)
		cancel()
		d.mu.Lock()
		switch {
		case err == nil:
			d.ok++
			d.okTook = append(d.okTook, took)
		case mesh.IsDraining(err):
			d.draining = append(d.draining, churnCall{"RPC to " + addr, start, took})
		default:
			d.failed = append(d.failed, fmt.Sprintf("%s RPC to %s after %v: %v", start.Format("15:04:05.000"), addr, took, err))
		}
		d.noteLocked(churnCall{"RPC to " + addr, start, took})
		d.mu.Unlock()
	}
}

func (d *churnDriver) fanOut() {
	for i := 0; i < churnMaxOps && d.pace(churnFanPace); i++ {
		games := d.n.GetNodeAddressesByType(d.typ)
		start := time.Now()
		err := d.n.SendMany(cmdBroadcast, games, map[string]interface{}{"text": "churn"}, 3)
		took := time.Since(start)
		d.mu.Lock()
		if err != nil {
			d.failed = append(d.failed, fmt.Sprintf("%s SendMany to %d nodes after %v: %v", start.Format("15:04:05.000"), len(games), took, err))
		} else {
			d.fanouts++
		}
		d.noteLocked(churnCall{fmt.Sprintf("SendMany to %d nodes", len(games)), start, took})
		d.mu.Unlock()
	}
}

// watchStalls measures how late the driver process wakes up from a short
// timer: a call slowed by a stall of the whole process (or machine) shows
// here too.
func (d *churnDriver) watchStalls() {
	for i := 0; i < churnMaxOps; i++ {
		start := time.Now()
		if !d.pace(time.Millisecond) {
			return
		}
		late := time.Since(start) - time.Millisecond
		d.mu.Lock()
		d.late = keep(d.late, churnCall{"timer", start, late})
		d.mu.Unlock()
	}
}

func (d *churnDriver) fail(format string, args ...any) {
	d.mu.Lock()
	d.failed = append(d.failed, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

// noteLocked keeps c if it is among the slowest calls.
func (d *churnDriver) noteLocked(c churnCall) {
	if c.took > stallLimit {
		d.over++
	}
	d.slowest = keep(d.slowest, c)
}

// keep adds c to the keepSlowest slowest calls of list if it is slower.
func keep(list []churnCall, c churnCall) []churnCall {
	if len(list) == keepSlowest && c.took <= list[keepSlowest-1].took {
		return list
	}
	list = append(list, c)
	slices.SortFunc(list, func(a, b churnCall) int { return int(b.took - a.took) })
	return list[:min(len(list), keepSlowest)]
}

// answered is how many RPCs were answered so far.
func (d *churnDriver) answered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ok
}
