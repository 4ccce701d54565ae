package rudp

import (
	"context"
	"errors"
	"fmt"
	"github.com/marsmesh/marsmesh/internal/ratelog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// addrPortConn is the allocation-free fast path of *net.UDPConn, also
// implemented by faultnet.Conn.
type addrPortConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// Transport is one UDP port carrying reliable and unreliable messages to
// any number of peers. It is safe for concurrent use.
type Transport struct {
	cfg   Config
	conn  net.PacketConn
	fast  addrPortConn
	batch *batchWriter
	local netip.AddrPort
	inc   uint64
	epoch time.Time

	mu       sync.RWMutex
	sessions map[netip.AddrPort]*session

	flushMu sync.Mutex
	flushq  []*session
	uflushq []*udest

	udMu      sync.RWMutex
	ud        map[netip.AddrPort]*udest
	flushWake chan struct{}

	activeMu     sync.Mutex
	newActive    []*session
	wake         chan struct{}
	rxBusy       atomic.Bool  // the read loop handles a batch (behind.go)
	rxAt         atomic.Int64 // when it last began a read
	rxCaught     atomic.Int64 // it has handled every packet that reached the socket before this (behind.go)
	lateSweep    bool         // the timer loop woke late: the process was short of CPU (timer goroutine only)
	timerPlanned atomic.Int64 // when the timer loop plans to wake next (timerDueAt)
	hsStarted    atomic.Bool  // a handshake started since the timer loop last looked (sweep)

	closing   atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	fragID atomic.Uint32
	reasm  *reassembler
	stats  counters
	warn   *ratelog.Logger

	// read-loop scratch
	frames   []frame
	claimed  []claim // see readers.go
	noSessMu sync.Mutex
	noSessAt map[netip.AddrPort]int64 // strayAllowed
	dbSec    int64                    // dialBackBudget: the current second
	dbLeft   int                      // and the dial backs left in it
	acksDue  []*session

	ackMu    sync.Mutex
	ackq     []*session // owe acks; flushed when ackTimer fires
	ackSpare []*session
	ackArmed bool         // ackTimer runs
	ackTimer *time.Timer  // read by the flusher (loops.go)
	acksOwed atomic.Int32 // sessions with ackDue set

	paths   pathMTUs      // see pathmtu.go
	noCaps  atomic.Bool   // tests: act as a transport from before CAPS (caps.go)
	rd      readers       // see readers.go
	ev      eventQueue    // see events.go
	cookies cookieSecrets // key the stateless handshake cookies

	ks             keyState // cluster keys (keyed.go)
	kcpMTU, kcpMSS int      // KCP packet and segment payload sizes
	maxDatagram    int      // the largest unreliable datagram before sealing
}

type frame struct {
	kind    byte
	payload []byte
	parts   [][]byte // a large body in pieces, payload nil (see frame.bytes)
	ackNow  bool     // acknowledge once delivered (SendOptions.AckNow, Done)
	una     uint32   // with ackNow: the una the session may report then
}

// Listen binds a UDP socket on addr ("host:port"; port 0 picks a free one)
// and starts a transport on it.
func Listen(addr string, cfg Config) (*Transport, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("rudp: listen %q: %w", addr, err)
	}
	network := "udp"
	if ua.IP.To4() != nil {
		network = "udp4"
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("rudp: listen %q: %w", addr, err)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	return New(c, cfg)
}

// ListenScan binds host:port, trying the next port while one is taken, up
// to tries ports. Port 0 binds any free port.
func ListenScan(host string, port, tries int, cfg Config) (*Transport, error) {
	if port == 0 || tries < 1 {
		tries = 1
	}
	var err error
	for i := 0; i < tries && port+i <= 65535; i++ {
		var t *Transport
		t, err = Listen(net.JoinHostPort(host, fmt.Sprint(port+i)), cfg)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	if last := min(port+tries-1, 65535); last > port {
		return nil, fmt.Errorf("rudp: no free port in %s:%d..%d: %w", host, port, last, err)
	}
	return nil, fmt.Errorf("rudp: port %s:%d is taken: %w", host, port, err)
}

// New starts a transport on conn, which it owns from now on: Close closes it.
func New(conn net.PacketConn, cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		conn.Close()
		return nil, err
	}
	local, err := addrPortOf(conn.LocalAddr())
	if err != nil {
		conn.Close()
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := &Transport{
		cfg:       cfg,
		conn:      conn,
		local:     local,
		inc:       newIncarnation(),
		epoch:     time.Now(),
		sessions:  make(map[netip.AddrPort]*session),
		ud:        make(map[netip.AddrPort]*udest),
		wake:      make(chan struct{}, 1),
		flushWake: make(chan struct{}, 1),
		done:      make(chan struct{}),
		noSessAt:  make(map[netip.AddrPort]int64),
		dbSec:     -1,
		warn:      ratelog.New(cfg.Logger, 10*time.Second),
	}
	t.rd.lead = make(chan *readState)
	t.ackTimer = time.NewTimer(time.Hour)
	t.ackTimer.Stop()
	t.ev.wake = make(chan struct{}, 1)
	t.cookies.init(t.cookieBucket(t.now()))
	t.kcpMTU, t.kcpMSS, t.maxDatagram = kcpMTU, kcpMTU-kcpOverhead, MaxPacketSize
	if len(cfg.Keys) > 0 {
		t.ks.keyed = true
		t.ks.hsAEAD = handshakeAEADs(cfg.Keys)
		t.ks.seen = make(map[uint64]int64)
		t.kcpMTU -= SealOverhead
		t.kcpMSS -= SealOverhead
		t.maxDatagram -= SealOverhead
	}
	t.fast, _ = conn.(addrPortConn)
	t.batch = newBatchWriter(conn, local)
	t.reasm = newReassembler(cfg.ReassemblyLimit, cfg.ReassemblyTTL)
	t.wg.Add(4)
	go t.eventLoop()
	go t.readLoop(nil)
	go t.timerLoop()
	go t.flushLoop()
	return t, nil
}

func newIncarnation() uint64 { return newToken() }

func addrPortOf(a net.Addr) (netip.AddrPort, error) {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("rudp: local address %q: %w", a.String(), err)
	}
	return ap, nil
}

// LocalAddr is the address peers reach this transport at.
func (t *Transport) LocalAddr() netip.AddrPort { return t.local }

// Incarnation identifies this transport instance; a restart on the same
// address gets a new one.
func (t *Transport) Incarnation() uint64 { return t.inc }

func (t *Transport) now() int64 { return int64(time.Since(t.epoch)) }

// activate hands a session with data in flight to the timer loop.
func (t *Transport) activate(s *session) {
	t.activeMu.Lock()
	t.newActive = append(t.newActive, s)
	t.activeMu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// session returns the session with a peer, starting a dial if there is none.
func (t *Transport) session(to netip.AddrPort) (*session, error) {
	return t.sessionFor(to, false)
}

// sessionFor is session; a dial it starts for udial (unreliable batching,
// ubatch.go) ends quietly if it never comes up and carried nothing.
func (t *Transport) sessionFor(to netip.AddrPort, udial bool) (*session, error) {
	t.mu.RLock()
	s := t.sessions[to]
	t.mu.RUnlock()
	if s != nil {
		return s, nil
	}
	if err := checkAddr(to); err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.closing.Load() {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	s = t.sessions[to]
	dial := s == nil
	if dial {
		s = newSession(t, to, t.now())
		s.myTok = newToken()
		s.udial = udial
		t.sessions[to] = s
	}
	t.mu.Unlock()
	if dial {
		s.mu.Lock()
		t.sendSynLocked(s, t.now())
		s.mu.Unlock()
		t.watchHandshake()
	}
	return s, nil
}

func (t *Transport) lookup(addr netip.AddrPort) *session {
	t.mu.RLock()
	s := t.sessions[addr]
	t.mu.RUnlock()
	return s
}

// kill ends a session: it leaves the table, pending work fails, and
// OnPeerDown hears about it (unless the transport is closing). With rst,
// the peer is told (when the session was established).
func (t *Transport) kill(s *session, reason error, rst bool) {
	t.mu.Lock()
	if t.sessions[s.addr] == s {
		delete(t.sessions, s.addr)
	}
	t.mu.Unlock()
	s.mu.Lock()
	if s.state == stateDead {
		s.mu.Unlock()
		return
	}
	keyed := s.state == stateEstablished || s.state == stateConfirming
	c := tagged{typ: pktRst, conv: s.keys.conv, tag: s.keys.rst}
	// A dial back or a dial for unreliable batching that never came up
	// and carried nothing was this transport's own: nobody is told.
	quiet := (s.dialBack || s.udial) && s.appended == 0
	s.dieLocked(reason)
	if reason != ErrPeerClosed && reason != ErrClosed && !quiet {
		t.stats.peersDead.Add(1)
	}
	if t.cfg.OnPeerDown != nil && !t.closing.Load() && !quiet {
		t.postEvent(event{kind: evDown, addr: s.addr, err: s.err})
	}
	s.unlockAndWrite()
	if rst && keyed {
		t.sendTagged(s, c)
	}
}

// Drain waits until every reliable message queued to a peer so far is
// acknowledged. It fails with the session's *PeerError if the peer dies
// with messages unacknowledged.
func (t *Transport) Drain(ctx context.Context, to netip.AddrPort) error {
	s := t.lookup(to)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	for {
		if s.state == stateDead {
			err := s.err
			s.mu.Unlock()
			if err.Unacked == 0 {
				return nil
			}
			return err
		}
		if s.state == stateEstablished && s.idleLocked() {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed.wait()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.done:
			return ErrClosed
		}
		s.mu.Lock()
	}
}

// PeerStatus describes a peer session.
type PeerStatus struct {
	Addr        netip.AddrPort
	Established bool   // handshake done (false while dialing)
	Incarnation uint64 // the peer's, once established
	Queued      int    // bytes not yet acknowledged
	// RTT is KCP's smoothed round-trip time (microsecond resolution); 0
	// before the first acknowledgement.
	RTT time.Duration
	// Retransmits counts the data segments this session sent again.
	Retransmits uint64
}

// Peer reports the session with addr, if there is one.
func (t *Transport) Peer(addr netip.AddrPort) (PeerStatus, bool) {
	s := t.lookup(addr)
	if s == nil {
		return PeerStatus{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := PeerStatus{
		Addr:        addr,
		Established: s.state == stateEstablished,
		Incarnation: s.remoteInc,
		Queued:      int(s.queuedLocked()),
		Retransmits: s.retransmits,
	}
	if s.kcp != nil {
		st.RTT = s.kcp.SRTT()
	}
	return st, s.state != stateDead
}

// Peers lists the addresses of every live session.
func (t *Transport) Peers() []netip.AddrPort {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]netip.AddrPort, 0, len(t.sessions))
	for a := range t.sessions {
		out = append(out, a)
	}
	return out
}

// Close flushes queued reliable data (bounded by Config.CloseTimeout),
// tells every peer the session is closed, stops the goroutines and closes
// the socket. It is idempotent and returns once everything has stopped.
func (t *Transport) Close() error {
	t.shutdown(true)
	return nil
}

// Abort closes the socket at once, with no flush and no close frames, as
// a crashed process would: peers find out through silence. For tests and
// emergencies; it is idempotent, and Close after it does nothing.
func (t *Transport) Abort() {
	t.shutdown(false)
}

func (t *Transport) shutdown(graceful bool) {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		t.mu.RLock()
		all := make([]*session, 0, len(t.sessions))
		for _, s := range t.sessions {
			all = append(all, s)
		}
		t.mu.RUnlock()
		if !graceful {
			t.conn.Close()
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), t.cfg.CloseTimeout)
			for _, s := range all {
				t.Drain(ctx, s.addr)
			}
			cancel()
		}
		for _, s := range all {
			s.mu.Lock()
			if graceful && (s.state == stateEstablished || s.state == stateConfirming) {
				fin := tagged{typ: pktFin, conv: s.keys.conv, tag: s.keys.fin}
				t.sendTagged(s, fin)
				t.sendTagged(s, fin) // a second copy in case one is lost
			}
			if s.state != stateDead {
				s.dieLocked(ErrClosed)
			}
			s.unlockAndWrite()
		}
		t.rd.close() // no reader rejoins or starts after this (readers.go)
		close(t.done)
		t.conn.Close()
		t.wg.Wait()

		t.mu.Lock()
		clear(t.sessions)
		t.mu.Unlock()
	})
}
