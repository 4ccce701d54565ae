package mesh

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Bounds of Shutdown's waits. With all of them used up, Shutdown takes
// at most OfflineWait + a sync interval + ReadinessWait + the retry timeout
// + AbandonWait, plus the transport's close (up to a second to flush).
const (
	// OfflineWait bounds how long Shutdown waits for its peers to take the
	// drain notice and for MARS to list the node draining.
	OfflineWait = 3 * time.Second
	// ReadinessWait bounds how long Shutdown polls the readiness check
	// (SetCheckForShutdownReadiness).
	ReadinessWait = 10 * time.Second
	// AbandonWait bounds how long Shutdown waits for handlers to return
	// once their contexts are cancelled, and for queued callbacks to run;
	// handlers still running then are left behind (logged) so that
	// Shutdown always returns.
	AbandonWait = 2 * time.Second
)

// readinessPoll is how often Shutdown asks the readiness check.
const readinessPoll = 50 * time.Millisecond

// Shutdown is ShutdownContext with a context that never ends: every wait
// runs to its bound.
func (n *Node) Shutdown() error { return n.ShutdownContext(context.Background()) }

// ShutdownContext takes the node out of the cluster without failing work
// that others send it, in this order:
//
//  1. It drains: from now on it answers new requests and streams at once
//     with ErrDraining (their callers go elsewhere), while running handlers
//     go on and one-way messages and fan-out are still taken. Its own lists
//     drop it, every listed node it has a session with gets a drain notice
//     (and lists it draining at once), and MARS lists it draining (and its
//     status StatusOffline) with its next report, sent now.
//  2. It waits until its peers acknowledged the notice and MARS lists it
//     draining (up to OfflineWait); if a node that may send to it has not
//     had the notice, one more sync interval, so that node's view has it.
//  3. If a readiness check is set (SetCheckForShutdownReadiness), it polls
//     it until it returns true (up to ReadinessWait). Then it releases the
//     leases it holds (Claim), so other nodes may claim them at once.
//  4. It leaves MARS (listed gone at once, ReasonLeft), flushes buffered
//     messages and lets running handlers finish, for up to the retry
//     timeout; then it cancels their contexts and waits up to AbandonWait
//     for them to return (a handler that still runs then is left behind,
//     logged).
//  5. It ends the node's streams and pending calls (send errors), stops
//     fan-out relays, closes the socket and runs the callbacks still
//     queued (up to AbandonWait).
//
// When ctx ends, the remaining waits are cut short. It is safe to call more
// than once and concurrently; later calls wait for the first and return its
// result.
func (n *Node) ShutdownContext(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.drain(ctx)
		n.waitReadiness(ctx)
		n.releaseLeases(ctx) // lease.go: the work that needed them is done
		n.life.closed.Store(true)
		mcErr := n.mc.Close() // graceful leave: gone at once
		if n.buffer != nil {
			n.buffer.close()
		}
		// Let running handlers finish and answer; past the retry timeout,
		// cancel their contexts and wait for them to return.
		n.life.refuse()
		waited := n.life.handlersDone()
		t := time.NewTimer(n.cfg.RetryTimeoutDuration())
		select {
		case <-waited:
		case <-t.C:
			n.log.Warn("mesh: shutdown is cancelling running handlers", "addr", n.selfStr)
		case <-ctx.Done():
			n.log.Warn("mesh: shutdown context ended; cancelling running handlers", "addr", n.selfStr)
		}
		t.Stop()
		close(n.life.done)
		n.life.cancel()
		n.in.workers.close() // parked workers end (the calls' sweeper fails every call)
		n.ps.workers.close()
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
		n.streams.close()
		n.calls.failAll(ErrClosed)
		n.fan.closeAll()
		trErr := n.tr.Close()
		n.streams.waitCtl()
		n.bg.Wait()
		n.calls.wait()
		n.in.workers.wait()
		n.ps.workers.wait()
		n.ev.close(AbandonWait)
		n.closeErr = errors.Join(mcErr, trErr)
	})
	return n.closeErr
}

// waitReadiness is step 3 of ShutdownContext.
func (n *Node) waitReadiness(ctx context.Context) {
	ready := n.life.readinessCheck()
	if ready == nil {
		return
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

// SetCheckForShutdownReadiness sets a function Shutdown polls (for up to
// ReadinessWait) while the node drains, before it leaves and closes, so
// in-flight game work can end.
func (n *Node) SetCheckForShutdownReadiness(cb func() bool) { n.life.setReadiness(cb) }

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
