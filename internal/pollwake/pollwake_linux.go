//go:build linux

package pollwake

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Waker is an eventfd registered with the runtime's poller: one goroutine
// Waits, another Wakes it once.
type Waker struct {
	f    *os.File
	rc   syscall.RawConn
	fd   uintptr
	fn   func(fd uintptr) bool // w.drain, bound once (a closure per Wait allocates)
	sink uint64                // drain's read buffer
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
	w.fn = w.drain
	return w
}

// Wake makes the goroutine in Wait (or the next to call it) return. It
// never blocks. The system call is raw: it skips entersyscall, which in
// an idle process would wake the runtime's sysmon thread.
func (w *Waker) Wake() {
	one := uint64(1)
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, w.fd, uintptr(unsafe.Pointer(&one)), 8)
		if e != syscall.EINTR {
			return // EAGAIN only past 2^64-2 wakes not waited for
		}
	}
}

// Wait blocks until Wake; several Wakes before it count as one.
func (w *Waker) Wait() {
	_ = w.rc.Read(w.fn)
}

// drain is Wait's RawConn callback: it reads (and so resets) the counter.
func (w *Waker) drain(fd uintptr) bool {
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&w.sink)), 8)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for Wake
		}
		return true
	}
}
