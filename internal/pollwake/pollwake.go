// Package pollwake lets one goroutine wake another through the runtime's
// network poller instead of the scheduler.
//
// Making a parked goroutine runnable (a channel send, a mutex, a go
// statement) makes the Go runtime wake a second OS thread whenever a
// processor is idle (wakep): in an otherwise idle process that is a futex
// wake-up, and on a virtual machine an interprocessor interrupt, on the
// waker's path. A goroutine parked in the network poller instead is found
// by the next thread that looks for work (findRunnable polls without
// blocking before it sleeps), typically the waker's own thread once its
// goroutine blocks, so handing work over costs one system call (an
// eventfd write; the waiting side reads a flag, not the eventfd) and no
// thread wake-up. Where the runtime has
// work queued or a thread waits in the poller, the woken goroutine may
// start later, or wake that thread, just as for a socket read.
//
// Wakers are pooled and never closed: Get returns nil when the pool is
// exhausted or the platform has no eventfd; callers then use a channel.
package pollwake

import "sync"

// maxWakers bounds the eventfds a process keeps open for wakers.
const maxWakers = 64

var pool struct {
	mu   sync.Mutex
	free []*Waker
	made int
}

// Get returns an idle Waker, or nil.
func Get() *Waker {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if k := len(pool.free); k > 0 {
		w := pool.free[k-1]
		pool.free[k-1] = nil
		pool.free = pool.free[:k-1]
		return w
	}
	if pool.made >= maxWakers {
		return nil
	}
	w := newWaker()
	if w != nil {
		pool.made++
	}
	return w
}

// Put returns w to the pool. Its one Wake must have been consumed by Wait.
func Put(w *Waker) {
	pool.mu.Lock()
	pool.free = append(pool.free, w)
	pool.mu.Unlock()
}
