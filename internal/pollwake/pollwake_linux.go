//go:build linux

package pollwake

import (
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Waker is an eventfd registered with the runtime's poller: one goroutine
// Waits, another Wakes it once.
//
// The eventfd is only the poller's signal; whether a Wake came is the
// flag woken. Wake sets it before writing the eventfd, and Wait checks it
// (in its RawConn callback, after the poller was armed) before it parks,
// so a Wait costs no system call of its own: the counter is never read.
// The runtime registers the eventfd edge-triggered, and every write to an
// eventfd is an edge whatever its counter holds (it would refuse writes
// only past 2^64-2 of them).
type Waker struct {
	f     *os.File
	rc    syscall.RawConn
	fd    uintptr
	fn    func(fd uintptr) bool // w.woke, bound once (a closure per Wait allocates)
	woken atomic.Bool
}

func newWaker() *Waker {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "pollwake")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	w := &Waker{f: f, rc: rc, fd: uintptr(fd)}
	w.fn = w.woke
	return w
}

// Wake makes the goroutine in Wait (or the next to call it) return. It
// never blocks. The system call is raw: it skips entersyscall, which in
// an idle process would wake the runtime's sysmon thread.
func (w *Waker) Wake() {
	w.woken.Store(true) // before the edge the poller reports
	one := uint64(1)
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, w.fd, uintptr(unsafe.Pointer(&one)), 8)
		if e != syscall.EINTR {
			return
		}
	}
}

// Wait blocks until Wake; several Wakes before it count as one.
func (w *Waker) Wait() {
	_ = w.rc.Read(w.fn)
}

// woke is Wait's RawConn callback. RawConn.Read calls it after it reset
// the poller's readiness, so a Wake it does not see yet comes with an
// edge that ends the wait (it is then called again).
func (w *Waker) woke(uintptr) bool {
	return w.woken.Swap(false)
}
