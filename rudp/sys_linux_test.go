//go:build linux && (amd64 || arm64)

package rudp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

func rawPair(t *testing.T, network, addr string) (*net.UDPConn, *rawSock) {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	r := newRawSock(c)
	if r == nil {
		t.Fatal("no raw calls on a UDP socket")
	}
	return c, r
}

// TestRawSockRoundTrip: sendmmsg and recvmmsg through raw calls carry a
// batch intact, with the sender's address, over IPv4, IPv6 and a
// dual-stack socket talking IPv4 (mapped addresses unmapped).
func TestRawSockRoundTrip(t *testing.T) {
	cases := []struct{ name, netA, addrA, netB, addrB string }{
		{"ipv4", "udp4", "127.0.0.1:0", "udp4", "127.0.0.1:0"},
		{"ipv6", "udp6", "[::1]:0", "udp6", "[::1]:0"},
		{"dual-stack to ipv4", "udp", "[::]:0", "udp4", "127.0.0.1:0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca, ra := rawPair(t, tc.netA, tc.addrA)
			cb, rb := rawPair(t, tc.netB, tc.addrB)
			to := cb.LocalAddr().(*net.UDPAddr).AddrPort()
			var pkts [][]byte
			for i := range 5 {
				pkts = append(pkts, bytes.Repeat([]byte{byte(i + 1)}, 100+i*300))
			}
			var w rawWriter
			res, err := ra.write(&w, pkts, to)
			if err != nil || res.pkts != len(pkts) || res.failed != 0 {
				t.Fatalf("write: %+v, %v", res, err)
			}
			if res, err := ra.write(&w, pkts[:1], to); err != nil || res.pkts != 1 {
				t.Fatalf("write one: %+v, %v", res, err)
			}
			want := append(pkts, pkts[0])
			rr := rb.newReader(4, readBufSize)
			bufs, from := make([][]byte, 4), make([]netip.AddrPort, 4)
			wantFrom := netip.AddrPortFrom(to.Addr().Unmap(), ca.LocalAddr().(*net.UDPAddr).AddrPort().Port())
			if !to.Addr().Unmap().Is4() {
				wantFrom = netip.AddrPortFrom(netip.IPv6Loopback(), wantFrom.Port())
			}
			for len(want) > 0 {
				n, err := readOnce(rr, bufs, from)
				if err != nil || n < 1 || n > 4 {
					t.Fatalf("read: %d, %v", n, err)
				}
				for i := range n {
					if !bytes.Equal(bufs[i], want[0]) {
						t.Fatalf("datagram of %d bytes, want %d", len(bufs[i]), len(want[0]))
					}
					if from[i] != wantFrom {
						t.Fatalf("from %v, want %v", from[i], wantFrom)
					}
					want = want[1:]
				}
			}
		})
	}
}

// TestRawSockRefusedSkipped: a datagram the kernel refuses (too large)
// is counted and skipped; the rest of the batch still leaves.
func TestRawSockRefusedSkipped(t *testing.T) {
	_, ra := rawPair(t, "udp4", "127.0.0.1:0")
	cb, rb := rawPair(t, "udp4", "127.0.0.1:0")
	to := cb.LocalAddr().(*net.UDPAddr).AddrPort()
	pkts := [][]byte{{1}, make([]byte, 70000), {3}}
	var w rawWriter
	res, err := ra.write(&w, pkts, to)
	if !errors.Is(err, syscall.EMSGSIZE) || res.pkts != 2 || res.failed != 1 || res.bytes != 2 {
		t.Fatalf("write: %+v, %v; want 2 sent, 1 refused with EMSGSIZE", res, err)
	}
	rr := rb.newReader(4, readBufSize)
	bufs, from := make([][]byte, 4), make([]netip.AddrPort, 4)
	var got []byte
	for len(got) < 2 {
		n, err := readOnce(rr, bufs, from)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			got = append(got, bufs[i]...)
		}
	}
	if !bytes.Equal(got, []byte{1, 3}) {
		t.Fatalf("got %v, want [1 3]", got)
	}
}

// TestRawSockClosed: a read waiting in the poller ends with net.ErrClosed
// when the socket closes, also one waiting after a batch inside serve; a
// write after that fails the same way.
func TestRawSockClosed(t *testing.T) {
	c, r := rawPair(t, "udp4", "127.0.0.1:0")
	rr := r.newReader(2, 2048)
	errc := make(chan error, 1)
	go func() {
		_, err := readOnce(rr, make([][]byte, 2), make([]netip.AddrPort, 2))
		errc <- err
	}()
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not end on Close")
	}

	c, r = rawPair(t, "udp4", "127.0.0.1:0")
	rr = r.newReader(2, 2048)
	handled := make(chan struct{}, 1)
	go func() {
		errc <- rr.serve(make([][]byte, 2), make([]netip.AddrPort, 2), nil, nil, func(int) bool {
			handled <- struct{}{}
			return false // wait for more
		})
	}()
	var w rawWriter
	if _, err := r.write(&w, [][]byte{{1}}, c.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	<-handled
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not end on Close")
	}
	res, err := r.write(&w, [][]byte{{1}, {2}}, netip.MustParseAddrPort("127.0.0.1:9"))
	if !errors.Is(err, net.ErrClosed) || res.failed != 2 {
		t.Fatalf("write after close: %+v, %v", res, err)
	}
}

// TestRawSockaddr: addresses encode and decode through both families.
func TestRawSockaddr(t *testing.T) {
	for _, s := range []string{"127.0.0.1:1", "10.1.2.3:65535", "[::1]:7", "[2001:db8::5]:1234"} {
		for _, v6 := range []bool{false, true} {
			ap := netip.MustParseAddrPort(s)
			if ap.Addr().Is6() && !v6 {
				continue
			}
			var sa syscall.RawSockaddrInet6
			n := putSockaddr(&sa, ap, v6)
			if got := sockaddrToAddrPort(&sa, n); got != ap {
				t.Errorf("%s (v6 socket %v): decoded %v", s, v6, got)
			}
		}
	}
	var sa syscall.RawSockaddrInet6
	sa.Family = syscall.AF_UNIX
	if got := sockaddrToAddrPort(&sa, syscall.SizeofSockaddrInet6); got.IsValid() {
		t.Errorf("AF_UNIX decoded as %v", got)
	}
	putSockaddr(&sa, netip.MustParseAddrPort("127.0.0.1:1"), false)
	if got := sockaddrToAddrPort(&sa, 4); got.IsValid() {
		t.Errorf("short sockaddr decoded as %v", got)
	}
}

// TestTransportDualStack: a transport on a dual-stack socket (raw calls
// writing IPv4 peers as mapped addresses) exchanges reliable messages with
// one on an IPv4 socket.
func TestTransportDualStack(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified})
	if err != nil {
		t.Skip(err)
	}
	aIn := newInbox()
	a, err := New(c, withSuiteKey(aIn.config(Config{})))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	for i := range 20 {
		if err := b.Send(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.LocalAddr().Port()), 1, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if !aIn.waitFor(10*time.Second, func() bool { return len(aIn.msgs) == 20 }) {
		t.Fatalf("got %d of 20", aIn.count())
	}
	from := aIn.msgs[0].from
	if from != b.LocalAddr() {
		t.Fatalf("from %v, want %v", from, b.LocalAddr())
	}
	if err := a.Send(from, 2, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("no reply over the dual-stack socket")
	}
}

// FuzzSockaddr: any bytes the kernel could leave in a name buffer, with
// any reported length, decode without panicking, and what decodes
// encodes back to the same address.
func FuzzSockaddr(f *testing.F) {
	var sa syscall.RawSockaddrInet6
	n := putSockaddr(&sa, netip.MustParseAddrPort("127.0.0.1:9"), false)
	f.Add((*[syscall.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], n)
	n = putSockaddr(&sa, netip.MustParseAddrPort("[2001:db8::1]:9"), true)
	f.Add((*[syscall.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], n)
	f.Fuzz(func(t *testing.T, b []byte, n uint32) {
		var sa syscall.RawSockaddrInet6
		copy((*[syscall.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], b)
		ap := sockaddrToAddrPort(&sa, n)
		if !ap.IsValid() || ap.Addr().Zone() != "" {
			return
		}
		var back syscall.RawSockaddrInet6
		m := putSockaddr(&back, ap, ap.Addr().Is6())
		if got := sockaddrToAddrPort(&back, m); got != ap {
			t.Fatalf("%v encodes and decodes as %v", ap, got)
		}
	})
}

// readOnce is one batch of rr.serve.
func readOnce(rr *rawReader, bufs [][]byte, from []netip.AddrPort) (int, error) {
	got := 0
	err := rr.serve(bufs, from, nil, nil, func(n int) bool { got = n; return true })
	return got, err
}

// TestRawServeWaitsInRead: after a batch that emptied the socket, serve
// waits inside the same Read for the next datagram (no recvmmsg that only
// says EAGAIN, no return) and sees every datagram, also one sent while the
// batch before it is being handled.
func TestRawServeWaitsInRead(t *testing.T) {
	_, ra := rawPair(t, "udp4", "127.0.0.1:0")
	cb, rb := rawPair(t, "udp4", "127.0.0.1:0")
	to := cb.LocalAddr().(*net.UDPAddr).AddrPort()
	rr := rb.newReader(4, 2048)
	bufs, from := make([][]byte, 4), make([]netip.AddrPort, 4)
	const total = 2000
	handled := make(chan struct{}, 1)
	go func() {
		var w rawWriter
		for i := range total {
			if _, err := ra.write(&w, [][]byte{{byte(i), byte(i >> 8)}}, to); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-handled: // the next one may come while the batch handler still runs
			case <-time.After(10 * time.Second):
				t.Errorf("datagram %d not handled", i)
				return
			}
		}
	}()
	next, calls, idles := 0, 0, 0
	for next < total && !t.Failed() {
		calls++
		err := rr.serve(bufs, from, func() { idles++ }, nil, func(n int) bool {
			for i := range n {
				if got := int(bufs[i][0]) | int(bufs[i][1])<<8; got != next {
					t.Errorf("datagram %d, want %d", got, next)
				}
				next++
				handled <- struct{}{}
			}
			return next == total
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("serve returned %d times for %d datagrams sent one by one, want once", calls, total)
	}
	if idles < total {
		t.Errorf("idle ran %d times, want at least once per datagram (%d)", idles, total)
	}
}

// TestRawSockArrivalStamp: each batch carries when its last datagram
// reached the socket (the kernel's stamp), not when it was read: a
// datagram read 200 ms after it came is 200 ms old (behind.go relies on
// it to tell a backlog from a silent peer).
func TestRawSockArrivalStamp(t *testing.T) {
	_, ra := rawPair(t, "udp4", "127.0.0.1:0")
	cb, rb := rawPair(t, "udp4", "127.0.0.1:0")
	if !rb.stamps {
		t.Skip("the kernel does not stamp datagrams (SO_TIMESTAMPNS)")
	}
	var w rawWriter
	before := time.Now().UnixNano()
	if _, err := ra.write(&w, [][]byte{[]byte("old")}, cb.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	sent := time.Now().UnixNano()
	time.Sleep(200 * time.Millisecond)
	rr := rb.newReader(4, readBufSize)
	if n, err := readOnce(rr, make([][]byte, 4), make([]netip.AddrPort, 4)); err != nil || n != 1 {
		t.Fatalf("read: %d, %v", n, err)
	}
	if rr.stamp < before || rr.stamp > sent {
		t.Fatalf("stamp %d ns after the send began, want within the send (%d ns)", rr.stamp-before, sent-before)
	}
}
