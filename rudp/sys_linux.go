//go:build linux && (amd64 || arm64)

package rudp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw socket calls (Linux).
//
// recvmmsg, sendmmsg and sendto run through the socket's RawConn with
// syscall.RawSyscall6: the socket is non-blocking, so each call returns
// at once, and EAGAIN hands the wait to the runtime's poller as a plain
// Read or Write would. Unlike syscall.Syscall6 (what the net package and
// x/net use) a raw call skips entersyscall, which in a process whose
// goroutines all wait wakes the sleeping sysmon thread: one OS-thread
// wake-up per request/response exchange saved on each side.

// rawSock is the raw-call path of a *net.UDPConn.
type rawSock struct {
	rc     syscall.RawConn
	v6     bool // an AF_INET6 socket: IPv4 peers are written as mapped addresses
	stamps bool // the kernel stamps each datagram with its arrival (SO_TIMESTAMPNS)
}

func newRawSock(c *net.UDPConn) *rawSock {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawSock{rc: rc}
	ok := false
	cerr := rc.Control(func(fd uintptr) {
		sa, err := syscall.Getsockname(int(fd))
		switch sa.(type) {
		case *syscall.SockaddrInet4:
			ok = err == nil
		case *syscall.SockaddrInet6:
			ok, r.v6 = err == nil, true
		}
		r.stamps = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) == nil
	})
	if cerr != nil || !ok {
		return nil
	}
	return r
}

// mmsghdr is struct mmsghdr of linux/socket.h (64-bit layout).
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// rawReader is the scratch of one read role's recvmmsg calls.
type rawReader struct {
	s     *rawSock
	hdrs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6 // large enough for either family
	bufs  [][]byte                   // full-size buffers behind iovs
	ctrl  []byte                     // a control buffer per datagram, for its arrival stamp
	fn    func(fd uintptr) bool      // rr.loop, bound once (a closure per call allocates)

	// The current serve call.
	out     [][]byte
	outFrom []netip.AddrPort
	idle    func() // before each recvmmsg and wait
	empty   func() // when a recvmmsg found the socket empty
	batch   func(n int) bool
	errno   syscall.Errno
	stamp   int64 // when the last datagram of the batch reached the socket (Unix ns; 0: unknown)
}

// ctrlSize is CMSG_SPACE of a struct timespec.
const ctrlSize = syscall.SizeofCmsghdr + 16

func (r *rawSock) newReader(n, size int) *rawReader {
	rr := &rawReader{
		s:     r,
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]syscall.Iovec, n),
		names: make([]syscall.RawSockaddrInet6, n),
		bufs:  make([][]byte, n),
	}
	if r.stamps {
		rr.ctrl = make([]byte, n*ctrlSize)
	}
	for i := range n {
		rr.bufs[i] = make([]byte, size)
		rr.iovs[i].Base = &rr.bufs[i][0]
		rr.iovs[i].SetLen(size)
		h := &rr.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&rr.names[i]))
		h.Iov = &rr.iovs[i]
		h.Iovlen = 1
	}
	rr.fn = rr.loop
	return rr
}

// serve reads datagrams, up to len(bufs) per recvmmsg (bufs and from
// are as long as the reader's batch), and hands each batch to batch(n)
// with bufs[:n] and from[:n] set. idle (if not nil) runs before each
// recvmmsg and each wait for the socket. serve returns nil after a batch
// that filled bufs (more may wait) or for which batch returned true, or
// the error that ended the reads. empty (if not nil) runs when a
// recvmmsg finds the socket empty.
//
// It all runs inside one RawConn.Read: after a batch that emptied the
// socket it waits for the poller's next readiness edge at once, without
// the recvmmsg that would only say EAGAIN. That is only sound within one
// Read call: each call begins by clearing the readiness the poller noted,
// so a datagram that came meanwhile would go unnoticed without a read
// first (loop always reads first). Close ends the wait (the poller
// reports the closing), and never waits for more than one batch: batches
// that keep coming full return.
func (rr *rawReader) serve(bufs [][]byte, from []netip.AddrPort, idle, empty func(), batch func(n int) bool) error {
	rr.out, rr.outFrom, rr.idle, rr.empty, rr.batch, rr.errno = bufs, from, idle, empty, batch, 0
	err := rr.s.rc.Read(rr.fn)
	errno := rr.errno
	rr.out, rr.outFrom, rr.idle, rr.empty, rr.batch = nil, nil, nil, nil, nil
	if err != nil {
		return err
	}
	if errno != 0 {
		return &net.OpError{Op: "read", Net: "udp", Err: errno}
	}
	return nil
}

// loop is serve's RawConn callback: it returns false to wait for the
// socket, true to end the Read.
func (rr *rawReader) loop(fd uintptr) bool {
	for {
		if rr.idle != nil {
			rr.idle()
		}
		got, errno := rr.recv(fd)
		switch errno {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if rr.empty != nil {
				rr.empty()
			}
			return false // the poller waits for the next datagram
		default:
			rr.errno = errno
			return true
		}
		for i := range got {
			rr.out[i] = rr.bufs[i][:rr.hdrs[i].n]
			rr.outFrom[i] = sockaddrToAddrPort(&rr.names[i], rr.hdrs[i].hdr.Namelen)
		}
		rr.stamp = rr.arrival(got - 1)
		if rr.batch(got) || got == len(rr.hdrs) {
			return true
		}
		// The socket was empty when recvmmsg returned: what came since
		// came with an edge the poller reports to this Read.
		if rr.idle != nil {
			rr.idle()
		}
		return false
	}
}

// recv is one recvmmsg into the reader's buffers.
func (rr *rawReader) recv(fd uintptr) (int, syscall.Errno) {
	for i := range rr.hdrs {
		rr.hdrs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
		rr.hdrs[i].hdr.Flags = 0
		rr.hdrs[i].n = 0
		if rr.ctrl != nil {
			rr.hdrs[i].hdr.Control = &rr.ctrl[i*ctrlSize]
			rr.hdrs[i].hdr.SetControllen(ctrlSize)
		}
	}
	r1, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, fd,
		uintptr(unsafe.Pointer(&rr.hdrs[0])), uintptr(len(rr.hdrs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r1), 0
}

// arrival returns when datagram i of the last recvmmsg reached the socket
// (Unix ns), from its SCM_TIMESTAMPNS control message; 0 if it has none.
func (rr *rawReader) arrival(i int) int64 {
	if rr.ctrl == nil || rr.hdrs[i].hdr.Controllen < ctrlSize {
		return 0
	}
	c := rr.ctrl[i*ctrlSize : (i+1)*ctrlSize]
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&c[0]))
	if h.Level != syscall.SOL_SOCKET || h.Type != syscall.SCM_TIMESTAMPNS {
		return 0
	}
	ts := (*syscall.Timespec)(unsafe.Pointer(&c[syscall.SizeofCmsghdr]))
	return ts.Nano()
}

// sockaddrToAddrPort decodes a sockaddr_in or sockaddr_in6 (an IPv4-mapped
// address unmapped); anything else is the zero AddrPort.
func sockaddrToAddrPort(sa *syscall.RawSockaddrInet6, n uint32) netip.AddrPort {
	p := (*[syscall.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(p[2:4])
	switch {
	case sa.Family == syscall.AF_INET && n >= syscall.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[4:8])), port)
	case sa.Family == syscall.AF_INET6 && n >= syscall.SizeofSockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 && !a.Is4In6() {
			a = a.WithZone(zoneName(sa.Scope_id))
		}
		return netip.AddrPortFrom(a.Unmap(), port)
	}
	return netip.AddrPort{}
}

func zoneName(idx uint32) string {
	if ifi, err := net.InterfaceByIndex(int(idx)); err == nil {
		return ifi.Name
	}
	return ""
}

// rawWriter is the scratch of sendmmsg calls; a txBatch keeps one. The
// RawConn callbacks are bound once and keep their state here (a closure
// per call allocates).
type rawWriter struct {
	hdrs []mmsghdr
	iovs []syscall.Iovec
	name syscall.RawSockaddrInet6

	mmsgFn, sendtoFn func(fd uintptr) bool
	pkts             [][]byte // the call's packets
	namelen          uint32
	done             int   // packets sent or skipped
	res              wrote // what the call did
	err              error // the last refusal
	errno            syscall.Errno
}

// putSockaddr encodes to as the socket's family wants it: an IPv6 socket
// (v6) takes IPv4 peers as IPv4-mapped addresses.
func putSockaddr(sa *syscall.RawSockaddrInet6, to netip.AddrPort, v6 bool) uint32 {
	*sa = syscall.RawSockaddrInet6{}
	p := (*[syscall.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	binary.BigEndian.PutUint16(p[2:4], to.Port())
	a := to.Addr()
	if a.Is4() && !v6 {
		sa.Family = syscall.AF_INET
		b := a.As4()
		copy(p[4:8], b[:])
		return syscall.SizeofSockaddrInet4
	}
	sa.Family = syscall.AF_INET6
	sa.Addr = a.As16()
	if z := a.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	return syscall.SizeofSockaddrInet6
}

// wrote is what one write did.
type wrote struct {
	pkts, bytes int // sent
	failed      int // refused by the kernel, or not sent as the socket closed
}

// write sends pkts to one address, several per sendmmsg call. A packet the
// kernel refuses is skipped (the others still go); err is the last
// refusal, or the closed socket's error.
func (r *rawSock) write(w *rawWriter, pkts [][]byte, to netip.AddrPort) (wrote, error) {
	if w.mmsgFn == nil {
		w.mmsgFn, w.sendtoFn = w.sendmmsg, w.sendto
	}
	w.namelen = putSockaddr(&w.name, to, r.v6)
	w.pkts, w.done, w.res, w.err, w.errno = pkts, 0, wrote{}, nil, 0
	defer func() { w.pkts = nil }()
	if len(pkts) == 1 {
		if err := r.rc.Write(w.sendtoFn); err != nil {
			return wrote{failed: 1}, err
		}
		if w.errno != 0 {
			return wrote{failed: 1}, &net.OpError{Op: "write", Net: "udp", Err: w.errno}
		}
		return wrote{pkts: 1, bytes: len(pkts[0])}, nil
	}
	for len(w.hdrs) < len(pkts) {
		w.hdrs = append(w.hdrs, mmsghdr{})
		w.iovs = append(w.iovs, syscall.Iovec{})
	}
	for i, p := range pkts {
		w.iovs[i] = syscall.Iovec{}
		if len(p) > 0 {
			w.iovs[i].Base = &p[0]
		}
		w.iovs[i].SetLen(len(p))
		w.hdrs[i] = mmsghdr{}
		h := &w.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&w.name))
		h.Namelen = w.namelen
		h.Iov = &w.iovs[i]
		h.Iovlen = 1
	}
	werr := r.rc.Write(w.mmsgFn)
	for i := range pkts {
		w.iovs[i].Base = nil // keep no packet alive
	}
	res, err := w.res, w.err
	if werr != nil {
		res.failed += len(pkts) - w.done
		err = werr
	}
	return res, err
}

// sendmmsg is the RawConn callback of a write of several packets.
func (w *rawWriter) sendmmsg(fd uintptr) bool {
	for w.done < len(w.pkts) {
		r1, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&w.hdrs[w.done])), uintptr(len(w.pkts)-w.done), 0, 0, 0)
		switch e {
		case 0:
			for _, p := range w.pkts[w.done : w.done+int(r1)] {
				w.res.pkts++
				w.res.bytes += len(p)
			}
			w.done += int(r1)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the poller waits for room
		default:
			w.err = &net.OpError{Op: "write", Net: "udp", Err: e}
			w.res.failed++
			w.done++ // skip the packet the kernel refused
		}
	}
	return true
}

// sendto is the RawConn callback of a write of one packet.
func (w *rawWriter) sendto(fd uintptr) bool {
	p := w.pkts[0]
	var base unsafe.Pointer
	if len(p) > 0 {
		base = unsafe.Pointer(&p[0])
	}
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(base), uintptr(len(p)),
			0, uintptr(unsafe.Pointer(&w.name)), uintptr(w.namelen))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for room
		}
		w.errno = e
		return true
	}
}

// unread reports whether datagrams wait in the socket's receive queue.
func (r *rawSock) unread() bool {
	var n int
	err := r.rc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return err == nil && n > 0
}
