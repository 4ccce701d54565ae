//go:build !linux

package pollwake

// Waker exists only on Linux; elsewhere Get returns nil.
type Waker struct{}

func newWaker() *Waker { return nil }

// Wake is not reached: Get returns no Waker here.
func (*Waker) Wake() {}

// Wait is not reached: Get returns no Waker here.
func (*Waker) Wait() {}
