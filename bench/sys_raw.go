package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// The raw transports carry no request IDs of their own: a request's first
// 8 bytes hold one (inside the payload, so every system sends the same
// bytes). At concurrency 1 the caller writes and reads the socket itself;
// above it, one reader goroutine hands each reply to its waiting caller,
// as any multiplexing client must.

// maxUDPPayload is the largest IPv4 UDP datagram payload.
const maxUDPPayload = 65507

// udpTimeout is how long a raw UDP request waits before it counts as lost.
const udpTimeout = 200 * time.Millisecond

var errLost = errors.New("no reply in time (lost)")

// demux matches replies to waiting callers by ID.
type demux struct {
	mu      sync.Mutex
	pending map[uint64]chan int
	next    atomic.Uint64
}

func (d *demux) register() (uint64, chan int) {
	id := d.next.Add(1)
	ch := make(chan int, 1)
	d.mu.Lock()
	if d.pending == nil {
		d.pending = make(map[uint64]chan int)
	}
	d.pending[id] = ch
	d.mu.Unlock()
	return id, ch
}

func (d *demux) drop(id uint64) {
	d.mu.Lock()
	delete(d.pending, id)
	d.mu.Unlock()
}

func (d *demux) deliver(id uint64, n int) {
	d.mu.Lock()
	ch := d.pending[id]
	delete(d.pending, id)
	d.mu.Unlock()
	if ch != nil {
		ch <- n
	}
}

func (d *demux) wait(id uint64, ch chan int, want int, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case n := <-ch:
		return checkEcho(n, want)
	case <-t.C:
		d.drop(id)
		return errLost
	}
}

// kcpRPC is a kcp-go UDPSession pair tuned like rudp's benchmarks
// (nodelay, 10 ms interval, fast resend 2, no congestion window,
// 1024-segment windows, immediate acks, MTU 1400), the server echoing
// what it reads. UDPSession.Write cuts a message longer than one segment
// into segment-sized KCP messages, which Read returns one by one, so the
// client counts bytes: every request has the same size, and one Write's
// pieces stay together in the stream.
type kcpRPC struct {
	echo    *kcpEcho // nil when the server runs in another process
	cli     *kcp.UDPSession
	mux     bool
	d       demux
	rbuf    []byte
	payload int
	wg      sync.WaitGroup
}

func tuneKCP(s *kcp.UDPSession) {
	s.SetNoDelay(1, 10, 2, 1)
	s.SetWindowSize(1024, 1024)
	s.SetACKNoDelay(true)
	s.SetMtu(1400)
	s.SetReadBuffer(4 << 20)
	s.SetWriteBuffer(4 << 20)
}

// kcpEcho is a kcp-go listener echoing every session's messages; a
// session's first message (one byte, sent by the dialer so the listener
// learns of it) is not echoed.
type kcpEcho struct {
	l        *kcp.Listener
	mu       sync.Mutex
	sessions []*kcp.UDPSession
	wg       sync.WaitGroup
}

func listenKCPEcho(host string) (*kcpEcho, error) {
	l, err := kcp.ListenWithOptions(net.JoinHostPort(host, "0"), nil, 0, 0)
	if err != nil {
		return nil, err
	}
	l.SetReadBuffer(4 << 20)
	l.SetWriteBuffer(4 << 20)
	e := &kcpEcho{l: l}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			s, err := l.AcceptKCP()
			if err != nil {
				return
			}
			tuneKCP(s)
			e.mu.Lock()
			e.sessions = append(e.sessions, s)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				buf := make([]byte, maxUDPPayload+64)
				if _, err := s.Read(buf); err != nil {
					return
				}
				for {
					n, err := s.Read(buf)
					if err != nil {
						return
					}
					if _, err := s.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return e, nil
}

func (e *kcpEcho) addr() string { return e.l.Addr().String() }

func (e *kcpEcho) Close() error {
	err := e.l.Close()
	e.mu.Lock()
	for _, s := range e.sessions {
		s.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
	return err
}

func startKCPRPC(payload int) (rpcTarget, error) {
	e, err := listenKCPEcho("127.0.0.1")
	if err != nil {
		return nil, err
	}
	k, err := dialKCPRPC(e.addr(), payload)
	if err != nil {
		e.Close()
		return nil, err
	}
	k.echo = e
	return k, nil
}

// dialKCPRPC is the client end, for an echo server at addr.
func dialKCPRPC(addr string, payload int) (*kcpRPC, error) {
	cli, err := kcp.DialWithOptions(addr, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	tuneKCP(cli)
	if _, err := cli.Write([]byte{0}); err != nil { // the listener learns of a session on its first packet
		cli.Close()
		return nil, err
	}
	return &kcpRPC{cli: cli, rbuf: make([]byte, payload+64), payload: payload}, nil
}

func (k *kcpRPC) Prepare(conc int) error {
	if conc == 1 || k.mux {
		return nil
	}
	k.mux = true
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		buf := make([]byte, len(k.rbuf))
		var id uint64
		got := 0
		for {
			k.cli.SetReadDeadline(time.Time{})
			n, err := k.cli.Read(buf)
			if err != nil {
				return
			}
			if got == 0 && n >= 8 {
				id = binary.BigEndian.Uint64(buf)
			}
			if got += n; got >= k.payload {
				k.d.deliver(id, got)
				got = 0
			}
		}
	}()
	return nil
}

func (k *kcpRPC) Call(req []byte) error {
	if !k.mux {
		id := k.d.next.Add(1)
		binary.BigEndian.PutUint64(req, id)
		if _, err := k.cli.Write(req); err != nil {
			return err
		}
		k.cli.SetReadDeadline(time.Now().Add(callTimeout))
		for got := 0; got < len(req); {
			n, err := k.cli.Read(k.rbuf)
			if err != nil {
				return err
			}
			if got == 0 && (n < 8 || binary.BigEndian.Uint64(k.rbuf) != id) {
				return errors.New("kcp-go: reply out of order")
			}
			got += n
		}
		return nil
	}
	id, ch := k.d.register()
	binary.BigEndian.PutUint64(req, id)
	if _, err := k.cli.Write(req); err != nil {
		k.d.drop(id)
		return err
	}
	return k.d.wait(id, ch, len(req), callTimeout)
}

func (k *kcpRPC) Close() error {
	err := k.cli.Close()
	k.wg.Wait()
	if k.echo != nil {
		err = errors.Join(err, k.echo.Close())
	}
	return err
}

// udpRPC is the floor: one UDP socket each side, the server writing every
// datagram back. Lost datagrams are not resent; a request without a reply
// in udpTimeout counts as an error.
type udpRPC struct {
	srv, cli *net.UDPConn // srv is nil when the server runs in another process
	mux      bool
	d        demux
	rbuf     []byte
	wg       sync.WaitGroup
}

// listenUDPEcho binds a UDP socket on host and writes every datagram back
// to its sender until the socket is closed; wg tracks the goroutine.
func listenUDPEcho(host string, wg *sync.WaitGroup) (*net.UDPConn, error) {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, err
	}
	srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, err
	}
	srv.SetReadBuffer(4 << 20)
	srv.SetWriteBuffer(4 << 20)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, maxUDPPayload)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return srv, nil
}

func startUDPRPC(payload int) (rpcTarget, error) {
	if payload > maxUDPPayload {
		return nil, fmt.Errorf("%d bytes do not fit a UDP datagram", payload)
	}
	u := &udpRPC{}
	srv, err := listenUDPEcho("127.0.0.1", &u.wg)
	if err != nil {
		return nil, err
	}
	if err := u.dial(srv.LocalAddr().String()); err != nil {
		srv.Close()
		u.wg.Wait()
		return nil, err
	}
	u.srv = srv
	return u, nil
}

// dial makes u the client end of an echo server at addr.
func (u *udpRPC) dial(addr string) error {
	ra, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err
	}
	u.cli, err = net.DialUDP("udp4", nil, ra)
	if err != nil {
		return err
	}
	u.cli.SetReadBuffer(4 << 20)
	u.cli.SetWriteBuffer(4 << 20)
	u.rbuf = make([]byte, maxUDPPayload)
	return nil
}

func (u *udpRPC) Prepare(conc int) error {
	if conc == 1 || u.mux {
		return nil
	}
	u.mux = true
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		buf := make([]byte, maxUDPPayload)
		u.cli.SetReadDeadline(time.Time{})
		for {
			n, err := u.cli.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. ECONNREFUSED from an earlier send
			}
			if n >= 8 {
				u.d.deliver(binary.BigEndian.Uint64(buf), n)
			}
		}
	}()
	return nil
}

func (u *udpRPC) Call(req []byte) error {
	if !u.mux {
		id := u.d.next.Add(1)
		binary.BigEndian.PutUint64(req, id)
		if _, err := u.cli.Write(req); err != nil {
			return err
		}
		u.cli.SetReadDeadline(time.Now().Add(udpTimeout))
		for {
			n, err := u.cli.Read(u.rbuf)
			if err != nil {
				return errLost
			}
			if n >= 8 && binary.BigEndian.Uint64(u.rbuf) == id {
				return checkEcho(n, len(req))
			}
			// a late reply to a request that already timed out
		}
	}
	id, ch := u.d.register()
	binary.BigEndian.PutUint64(req, id)
	if _, err := u.cli.Write(req); err != nil {
		u.d.drop(id)
		return err
	}
	return u.d.wait(id, ch, len(req), udpTimeout)
}

func (u *udpRPC) Close() error {
	err := u.cli.Close()
	if u.srv != nil {
		err = errors.Join(err, u.srv.Close())
	}
	u.wg.Wait()
	return err
}
