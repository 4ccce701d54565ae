package mesh

import "github.com/marsmesh/marsmesh/internal/pollwake"

// Idle workers.
//
// A worker that runs out of jobs may park, up to maxIdleWorkers of them,
// on a pollwake.Waker instead of ending. When work arrives while no
// handler runs, the read goroutine wakes a parked worker through the
// runtime's network poller rather than starting a goroutine: starting or
// waking a goroutine through the scheduler makes the runtime wake a second
// OS thread whenever a processor is idle, a futex wake-up (an
// interprocessor interrupt on a VM) on the request's path. The parked
// worker is found instead by the read goroutine's own thread once it waits
// for the socket again. While handlers run, new work gets a new goroutine
// as before (with threads busy, one woken through the poller could wait);
// workers whose handler returned and that only answer do not count (at
// one request at a time the next one often arrives while the worker of
// the last is still writing its reply).
//
// A parked worker is not counted in the node's lifecycle (Shutdown does
// not wait for it as for a handler); it is counted in in.parked, and
// Shutdown wakes every parked worker when the node stops (closeIdleWorkers)
// before it waits for them.

// maxIdleWorkers is how many workers may wait for work.
const maxIdleWorkers = 2

type idleWorker struct {
	w    *pollwake.Waker
	work bool // woken for work; else the node stops
}

// startWorkerLocked starts a worker for the ready jobs; it runs under
// in.mu and reports false when the node is stopping.
func (in *inbound) startWorkerLocked() bool {
	if !in.life.enter() {
		return false
	}
	if k := len(in.idle); k > 0 && in.running <= int(in.replying.Load()) {
		iw := in.idle[k-1]
		in.idle[k-1] = nil
		in.idle = in.idle[:k-1]
		iw.work = true
		iw.w.Wake()
		return true
	}
	go in.workerLoop()
	return true
}

// workerLoop runs ready jobs (counted in the node's lifecycle), then parks as an idle
// worker, or ends.
func (in *inbound) workerLoop() {
	var iw *idleWorker
	for {
		in.worker()
		in.life.exit()
		if iw = in.parkIdleWorker(iw); iw == nil {
			return
		}
		iw.w.Wait()
		in.mu.Lock()
		work := iw.work
		iw.work = false
		in.mu.Unlock()
		in.parked.Done()
		if !work {
			pollwake.Put(iw.w)
			return
		}
	}
}

// parkIdleWorker lists the calling worker as idle, if there is room and
// the node is not stopping; it returns nil (and frees iw's waker) if not.
func (in *inbound) parkIdleWorker(iw *idleWorker) *idleWorker {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.idleClosed || len(in.idle) >= maxIdleWorkers {
		if iw != nil {
			pollwake.Put(iw.w)
		}
		return nil
	}
	if iw == nil {
		w := pollwake.Get()
		if w == nil {
			return nil
		}
		iw = &idleWorker{w: w}
	}
	in.parked.Add(1) // Shutdown closes the idle list before it waits for in.parked
	in.idle = append(in.idle, iw)
	return iw
}

// closeIdleWorkers ends the parked workers; Shutdown runs it when the
// node stops.
func (in *inbound) closeIdleWorkers() {
	in.mu.Lock()
	idle := in.idle
	in.idle = nil
	in.idleClosed = true
	in.mu.Unlock()
	for _, iw := range idle {
		iw.w.Wake() // work is false: it ends
	}
}

// waitParked waits for the parked workers to end (after closeIdleWorkers).
func (in *inbound) waitParked() { in.parked.Wait() }
