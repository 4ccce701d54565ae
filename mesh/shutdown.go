package mesh

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// Bounds of Shutdown's waits. With all of them used up, Shutdown takes
// at most OfflineWait + ReadinessWait + the retry timeout + AbandonWait,
// plus the transport's close (up to a second to flush).
const (
	// OfflineWait bounds how long Shutdown, when a readiness check is
	// set, waits for MARS to have the node's offline status before it
	// starts polling the check.
	OfflineWait = 3 * time.Second
	// ReadinessWait bounds how long Shutdown polls the readiness check
	// (SetCheckForShutdownReadiness).
	ReadinessWait = 10 * time.Second
	// AbandonWait bounds how long Shutdown waits for handlers to return
	// once their contexts are cancelled; handlers still running then are
	// left behind (logged) so that Shutdown always returns.
	AbandonWait = 2 * time.Second
)

// readinessPoll is how often Shutdown asks the readiness check.
const readinessPoll = 50 * time.Millisecond

// Shutdown is ShutdownContext with a context that never ends: every wait
// runs to its bound.
func (n *Node) Shutdown() error { return n.ShutdownContext(context.Background()) }

// ShutdownContext takes the node out of the cluster in this order:
//
//  1. It marks the node offline in its own status (IsMyNodeOffline) and
//     at MARS, so other nodes stop choosing it while it drains.
//  2. If a readiness check is set (SetCheckForShutdownReadiness), it waits
//     until MARS has the offline status (up to OfflineWait), then polls
//     the check until it returns true (up to ReadinessWait).
//  3. It leaves MARS (listed offline at once, removed later), stops
//     accepting requests and streams, flushes buffered messages and lets
//     running handlers finish, for up to the retry timeout; then it
//     cancels their contexts and waits up to AbandonWait for them to
//     return (a handler that still runs then is left behind, logged).
//  4. It ends the node's streams and pending calls (send errors), stops
//     fan-out relays and closes the socket.
//
// When ctx ends, the remaining waits of steps 2 and 3 are cut short.
// It is safe to call more than once and concurrently; later calls wait for
// the first and return its result.
func (n *Node) ShutdownContext(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.releaseLeases(ctx) // lease.go
		n.goOffline(ctx)
		n.closed.Store(true)
		mcErr := n.mc.Close() // graceful leave: offline at once
		if n.buffer != nil {
			n.buffer.close()
		}
		// Let running handlers finish and answer; past the retry timeout,
		// cancel their contexts and wait for them to return.
		n.runMu.Lock()
		n.stopping = true
		n.runMu.Unlock()
		waited := make(chan struct{})
		go func() { n.wg.Wait(); close(waited) }()
		t := time.NewTimer(n.cfg.RetryTimeoutDuration())
		select {
		case <-waited:
		case <-t.C:
			n.log.Warn("mesh: shutdown is cancelling running handlers", "addr", n.selfStr)
		case <-ctx.Done():
			n.log.Warn("mesh: shutdown context ended; cancelling running handlers", "addr", n.selfStr)
		}
		t.Stop()
		close(n.done)
		n.stop()
		// A handler that ignores its context (or has none) may never
		// return: after AbandonWait it is left running, and Shutdown goes
		// on (its answer, if it ever comes, finds the socket closed).
		t = time.NewTimer(AbandonWait)
		select {
		case <-waited:
		case <-t.C:
			n.log.Error("mesh: shutdown is leaving handlers that did not return after their contexts were cancelled", "addr", n.selfStr, "waited", AbandonWait)
		}
		t.Stop()
		n.closeStreams()
		n.failAllCalls(ErrClosed)
		n.fan.closeAll()
		trErr := n.tr.Close()
		n.waitStreamCtl()
		n.bg.Wait()
		n.closeErr = errors.Join(mcErr, trErr)
	})
	return n.closeErr
}

// goOffline is steps 1 and 2 of ShutdownContext.
func (n *Node) goOffline(ctx context.Context) {
	if !n.guest {
		if err := n.mc.SetStatus(mars.StatusOffline); err != nil {
			n.log.Warn("mesh: shutdown could not set the status offline", "err", err)
		}
	}
	n.cbMu.RLock()
	ready := n.readiness
	n.cbMu.RUnlock()
	if ready == nil {
		return
	}
	if !n.guest && n.mc.InTouch() {
		// Two completed syncs after the change: the first carried it (the
		// change wakes the sync loop) and its answer acknowledged it.
		wctx, cancel := context.WithTimeout(ctx, OfflineWait)
		err := n.mc.WaitForLatestNodeDataContext(wctx)
		cancel()
		if err != nil {
			n.log.Warn("mesh: shutdown did not see MARS take the offline status", "err", err)
		}
	}
	deadline := time.NewTimer(ReadinessWait)
	defer deadline.Stop()
	tick := time.NewTicker(readinessPoll)
	defer tick.Stop()
	for !ready() {
		select {
		case <-deadline.C:
			n.log.Warn("mesh: shutdown readiness check still false; going on", "after", ReadinessWait)
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ShutdownContext is Shutdown with a context that cuts its waits short
// (see Node.ShutdownContext).
func ShutdownContext(ctx context.Context) error {
	defMu.Lock()
	n, srv := def, marsSrv
	def, marsSrv = nil, nil
	defMu.Unlock()
	var errs []error
	if n != nil {
		errs = append(errs, n.ShutdownContext(ctx))
	}
	if srv != nil {
		errs = append(errs, srv.Close())
	}
	return errors.Join(errs...)
}

// ShutdownOnSignal shuts the default node down (Shutdown, in the order
// Node.ShutdownContext describes) when one of sigs arrives; with no sigs,
// on SIGTERM or os.Interrupt (SIGINT). It returns at once, with a channel
// that receives Shutdown's result once the shutdown has finished and is
// then closed: a program's main waits on it and exits. After the first
// signal the signals are no longer caught, so a second one ends the
// process the default way. The watching goroutine ends only with a signal;
// see ShutdownOnSignalContext to stop it otherwise.
func ShutdownOnSignal(sigs ...os.Signal) <-chan error {
	return ShutdownOnSignalContext(context.Background(), sigs...)
}

// ShutdownOnSignalContext is ShutdownOnSignal that also shuts down when
// ctx ends (and so never outlives ctx).
func ShutdownOnSignalContext(ctx context.Context, sigs ...os.Signal) <-chan error {
	if len(sigs) == 0 {
		sigs = []os.Signal{syscall.SIGTERM, os.Interrupt}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan error, 1)
	go func() {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		signal.Stop(ch)
		done <- Shutdown()
		close(done)
	}()
	return done
}
