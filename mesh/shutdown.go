package mesh

import (
	"errors"
	"time"
)

// Shutdown marks the node offline at MARS, waits for in-flight handlers
// (up to the retry timeout), flushes queued messages and closes the
// socket. It is safe to call more than once; later calls return the
// first call's result.
func (n *Node) Shutdown() error {
	n.closeOnce.Do(func() {
		n.cbMu.RLock()
		ready := n.readiness
		n.cbMu.RUnlock()
		if ready != nil {
			deadline := time.Now().Add(10 * time.Second)
			for !ready() && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
		}
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
		select {
		case <-waited:
		case <-time.After(n.cfg.RetryTimeoutDuration()):
			n.log.Warn("mesh: shutdown is cancelling running handlers", "addr", n.selfStr)
		}
		close(n.done)
		n.stop()
		<-waited
		n.failAllCalls(ErrClosed)
		n.fan.closeAll()
		trErr := n.tr.Close()
		n.bg.Wait()
		n.closeErr = errors.Join(mcErr, trErr)
	})
	return n.closeErr
}
