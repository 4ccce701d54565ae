package mesh

import (
	"context"
	"sync"
	"sync/atomic"
)

// lifecycle is a node's run state, which every component may consult:
// whether Shutdown has begun (closed), the context handlers derive theirs
// from, done (closed when the node stops serving), and the handler
// goroutines Shutdown waits for.
type lifecycle struct {
	closed   atomic.Bool     // Shutdown has begun: refuse new sends
	ctx      context.Context // cancelled by Shutdown; parent of handler contexts
	cancel   context.CancelFunc
	done     chan struct{} // closed when the node stops serving
	runMu    sync.RWMutex  // guards stopping against wg.Add
	stopping bool
	wg       sync.WaitGroup // handler goroutines

	checkMu   sync.Mutex
	readiness func() bool // SetCheckForShutdownReadiness
}

func newLifecycle() *lifecycle {
	l := &lifecycle{done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// enter counts a handler Shutdown waits for, unless the node is stopping;
// a true result must be matched by exit.
func (l *lifecycle) enter() bool {
	l.runMu.RLock()
	defer l.runMu.RUnlock()
	if l.stopping {
		return false
	}
	l.wg.Add(1)
	return true
}

// exit ends a handler counted by enter.
func (l *lifecycle) exit() { l.wg.Done() }

// start runs f on a goroutine Shutdown waits for; it refuses once
// Shutdown has begun waiting.
func (l *lifecycle) start(f func()) bool {
	if !l.enter() {
		return false
	}
	go func() {
		defer l.exit()
		f()
	}()
	return true
}

// handlersDone returns a channel closed once every counted handler has
// ended (call it after refuse, or more may start).
func (l *lifecycle) handlersDone() <-chan struct{} {
	ch := make(chan struct{})
	go func() { l.wg.Wait(); close(ch) }()
	return ch
}

// refuse makes enter and start refuse from now on.
func (l *lifecycle) refuse() {
	l.runMu.Lock()
	l.stopping = true
	l.runMu.Unlock()
}

func (l *lifecycle) setReadiness(cb func() bool) {
	l.checkMu.Lock()
	l.readiness = cb
	l.checkMu.Unlock()
}

// readinessCheck returns the check Shutdown polls, or nil.
func (l *lifecycle) readinessCheck() func() bool {
	l.checkMu.Lock()
	defer l.checkMu.Unlock()
	return l.readiness
}
