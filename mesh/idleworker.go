package mesh

import (
	"sync"

	"github.com/marsmesh/marsmesh/internal/pollwake"
)

// Idle workers.
//
// A worker that runs out of jobs may park, up to maxIdleWorkers of them
// per pool, on a pollwake.Waker instead of ending. When work arrives while
// no worker runs, the read goroutine wakes a parked worker through the
// runtime's network poller rather than starting a goroutine: starting or
// waking a goroutine through the scheduler makes the runtime wake a second
// OS thread whenever a processor is idle, a futex wake-up (an
// interprocessor interrupt on a VM) on the message's path. The parked
// worker is found instead by the read goroutine's own thread once it waits
// for the socket again. With many processes per core (a publish to many
// subscriber processes) that halves the context switches per delivery.
//
// Two pools use it: handlers (inbound: while handlers run, new work gets a
// new goroutine as before, since with threads busy one woken through the
// poller could wait; workers whose handler returned and that only answer
// do not count, as at one request at a time the next one often arrives
// while the worker of the last is still writing its reply) and
// subscriptions (pubsub_sub.go).
//
// A parked worker is not counted in the node's lifecycle (Shutdown does
// not wait for it as for a handler); Shutdown ends the parked workers
// (close) when the node stops, then waits for them (wait).

// maxIdleWorkers is how many workers of a pool may wait for work.
const maxIdleWorkers = 2

// idlePool is one set of parked workers.
type idlePool struct {
	mu     sync.Mutex
	idle   []*parkedWorker
	closed bool
	parked sync.WaitGroup
}

type parkedWorker struct {
	w   *pollwake.Waker
	job func() // set by wake; nil when the pool closed
}

// start runs job on a parked worker or, if none is parked, a new
// goroutine. The caller counted job in life (enter); the worker ends it
// (exit).
func (p *idlePool) start(life *lifecycle, job func()) {
	if !p.wake(job) {
		go p.run(life, job)
	}
}

// run runs jobs, each counted in life by its starter, parking between them.
func (p *idlePool) run(life *lifecycle, job func()) {
	var pw *parkedWorker
	for job != nil {
		job()
		life.exit()
		job = p.park(&pw)
	}
}

// wake hands job to a parked worker; false if none is parked.
func (p *idlePool) wake(job func()) bool {
	p.mu.Lock()
	k := len(p.idle)
	if k == 0 {
		p.mu.Unlock()
		return false
	}
	pw := p.idle[k-1]
	p.idle[k-1] = nil
	p.idle = p.idle[:k-1]
	pw.job = job
	p.mu.Unlock()
	pw.w.Wake()
	return true
}

// park waits, as a parked worker, for a job and returns it; nil if the
// pool has no room, no waker is free, or the pool closed (the worker then
// ends). *pw is the worker's parking place, kept between jobs.
func (p *idlePool) park(pw **parkedWorker) func() {
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdleWorkers {
		p.mu.Unlock()
		p.free(pw)
		return nil
	}
	if *pw == nil {
		w := pollwake.Get()
		if w == nil {
			p.mu.Unlock()
			return nil
		}
		*pw = &parkedWorker{w: w}
	}
	me := *pw
	p.parked.Add(1) // close empties the list before wait
	p.idle = append(p.idle, me)
	p.mu.Unlock()
	me.w.Wait()
	p.mu.Lock()
	job := me.job
	me.job = nil
	p.mu.Unlock()
	p.parked.Done()
	if job == nil {
		p.free(pw)
	}
	return job
}

func (p *idlePool) free(pw **parkedWorker) {
	if *pw != nil {
		pollwake.Put((*pw).w)
		*pw = nil
	}
}

// close ends the parked workers and parks no more.
func (p *idlePool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, pw := range idle {
		pw.w.Wake() // job is nil: it ends
	}
}

// wait waits for the parked workers to end (after close).
func (p *idlePool) wait() { p.parked.Wait() }

// parkedCount is how many workers are parked (tests).
func (p *idlePool) parkedCount() (n int, closed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle), p.closed
}

// startWorkerLocked starts a worker for the ready jobs; it runs under
// in.mu and reports false when the node is stopping.
func (in *inbound) startWorkerLocked() bool {
	if !in.life.enter() {
		return false
	}
	if in.running <= int(in.replying.Load()) && in.workers.wake(in.worker) {
		return true
	}
	go in.workers.run(in.life, in.worker)
	return true
}
