package mars

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/internal/ratelog"
	"github.com/marsmesh/marsmesh/rudp"
)

// Flow control. MARS answers on the transport's read goroutine, which must
// never wait on a queue (it would stop reading the acknowledgements that
// drain it), so every send is NoWait: a full queue drops the reply
// (ErrWouldBlock, counted as skipped). MARS also skips a sync reply
// altogether while the peer still has replyBacklog bytes unacknowledged:
// the node asks again with its next report and then gets one reply
// covering everything, instead of MARS stacking up deltas that each
// supersede the one before on a slow link.
const (
	replyBacklog      = 1 << 20
	defaultMaxQueued  = 32 << 20 // rudp's default Config.MaxQueued
	frameOverheadSize = 5        // rudp frame header per message
)

// Server is a MARS registry server on one rudp transport. Messages are
// handled on the transport's read goroutine, under mu, and answered at
// once: a reply sent while the report is being delivered carries the
// transport's acknowledgement, and no goroutine hand-off is paid per
// message. Handling never waits for anything but mu (replies to a peer
// with a large backlog are skipped); a second goroutine applies liveness
// and schedules saves under the same mutex.
type Server struct {
	opts  ServerOptions
	tr    *rudp.Transport
	inc   uint64
	log   *slog.Logger
	mlog  *memberLog // membership changes (under mu)
	warn  *ratelog.Logger
	epoch time.Time

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex // guards everything below
	closed   bool
	apps     map[string]*appState
	clock    uint64 // version clock shared by the apps
	buf      []byte
	loadedAt int64 // wall-clock Unix ns the loaded data file was saved at; 0 = none
	dirty    bool  // shared data changed since the last save
	persist  *persister
	held     map[netip.AddrPort]heldReply // with DataDir: replies waiting for a save
	snapSeq  uint64                       // numbers snapshots of the shared data
	lastReg  int64                        // server clock of the last node registration (server_digest.go)
	saveNow  chan struct{}

	stats  serverCounters
	nstats nodeStatsTable // admin endpoint only (nodestats.go)

	st   *storeState // with ServerOptions.Store (server_store.go)
	kv   kvServer    // the key-value store and leases (kv_server.go)
	noKV bool        // tests: behave as a MARS of the revision before the key-value store
	// noDigest (tests): behave as a MARS of the revision before view
	// digests, which skips them and sends a full snapshot.
	noDigest bool
}

// heldReply is a sync reply that acknowledges shared-data changes; with
// DataDir it waits until the data file holds them.
type heldReply struct {
	app, addr    string
	guest        bool
	inc          uint64 // the node's incarnation
	marsInc, ver uint64
	flags, echo  uint64
	ack          uint64 // what the reply acknowledges
	dig          *digest
}

type inMsg struct {
	from netip.AddrPort
	kind byte
	p    []byte
	node string // with a Store: the mesh address the message is about (peekNode)
	at   int64  // with a Store: server clock when it was queued for a worker
}

type serverCounters struct {
	reports, leaves, bad, syncs, syncBytes, skipped, ignored atomic.Uint64
	fulls, buckets, waits                                    atomic.Uint64
}

// ServerStats is a snapshot of a server's counters.
type ServerStats struct {
	Reports   uint64 // reports handled
	Leaves    uint64 // graceful leaves handled
	Bad       uint64 // messages refused as malformed or invalid
	Syncs     uint64 // sync messages sent
	SyncBytes uint64 // bytes of sync messages sent
	Skipped   uint64 // replies skipped because the peer had a backlog (it asks again)
	Ignored   uint64 // unreliable datagrams of MARS kinds, dropped unanswered
	// Reconciling views after a restart (digest.go): full snapshots sent
	// (for any reason), syncs of differing buckets sent, and asks to send
	// the digest again later.
	Fulls, Buckets, Waits uint64
}

// Listen starts a MARS server on a UDP address ("host:port").
func Listen(addr string, opts ServerOptions) (*Server, error) {
	s, cfg, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	tr, err := rudp.Listen(addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.start(tr); err != nil {
		tr.Close()
		return nil, err
	}
	return s, nil
}

// NewServer starts a MARS server on conn (for example a faultnet endpoint
// in tests); the server owns conn from now on.
func NewServer(conn net.PacketConn, opts ServerOptions) (*Server, error) {
	s, cfg, err := newServer(opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	tr, err := rudp.New(conn, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.start(tr); err != nil {
		tr.Close()
		return nil, err
	}
	return s, nil
}

func newServer(opts ServerOptions) (*Server, rudp.Config, error) {
	if err := opts.Validate(); err != nil {
		return nil, rudp.Config{}, err
	}
	opts = opts.withDefaults()
	s := &Server{
		opts:  opts,
		inc:   newIncarnation(),
		log:   opts.Logger,
		warn:  ratelog.New(opts.Logger, 10*time.Second),
		mlog:  newMemberLog(opts.Logger),
		epoch: time.Now(),
		done:  make(chan struct{}),
		apps:  make(map[string]*appState),
		held:  make(map[netip.AddrPort]heldReply),

		saveNow: make(chan struct{}, 1),
	}
	if opts.Store != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.inc = opts.Store.ID()
		s.st = &storeState{store: opts.Store, owner: newIncarnation(), ctx: ctx, cancel: cancel,
			seed: maphash.MakeSeed(), revCh: make(chan struct{})}
	}
	s.kvInit()
	if opts.DataDir != "" {
		p, err := newPersister(opts.DataDir, opts.Logger)
		if err != nil {
			return nil, rudp.Config{}, err
		}
		saved, at, err := p.load()
		if err != nil {
			return nil, rudp.Config{}, err
		}
		s.persist, s.loadedAt = p, at
		s.restore(saved)
		if err := s.kvLoad(); err != nil {
			return nil, rudp.Config{}, err
		}
	}
	cfg := opts.Transport
	cfg.OnMessage = s.onMessage
	return s, cfg, nil
}

func (s *Server) start(tr *rudp.Transport) error {
	if s.st != nil {
		if err := s.startStore(); err != nil {
			s.st.cancel()
			close(s.done)
			s.wg.Wait()
			return err
		}
		s.kvStart()
	}
	s.mu.Lock()
	s.tr = tr // messages arriving before this are dropped; nodes resend
	s.mu.Unlock()
	s.wg.Add(1)
	go s.run()
	if s.persist != nil {
		s.wg.Add(1)
		go s.persist.run(s.done, &s.wg)
	}
	if s.kv.wal != nil {
		s.wg.Add(1)
		go s.kvWriter()
	}
	return nil
}

func newIncarnation() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.tr.LocalAddr() }

// Incarnation identifies this server instance (with a Store: the store's
// state, the same for every replica); every reply carries it, and nodes
// re-register when it changes.
func (s *Server) Incarnation() uint64 { return s.inc }

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Reports: s.stats.reports.Load(), Leaves: s.stats.leaves.Load(), Bad: s.stats.bad.Load(),
		Syncs: s.stats.syncs.Load(), SyncBytes: s.stats.syncBytes.Load(),
		Skipped: s.stats.skipped.Load(), Ignored: s.stats.ignored.Load(),
		Fulls: s.stats.fulls.Load(), Buckets: s.stats.buckets.Load(), Waits: s.stats.waits.Load(),
	}
}

// Close stops the server: messages are no longer handled, the transport
// closes, and the shared data is saved when DataDir is set. It is
// idempotent and returns once every goroutine has stopped.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.st != nil {
			s.st.cancel()
		}
		s.wg.Wait()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.tr.Close()
		s.kvClose()
		if s.persist != nil {
			s.closeErr = s.persist.save(s.snapshotData())
		}
	})
	return s.closeErr
}

// onMessage runs on the transport's read goroutine. MARS takes only
// reliable messages, which arrive on an established session; an
// unreliable datagram (its source may be forged) is counted and dropped
// without an answer, so MARS reflects nothing to a forged source.
func (s *Server) onMessage(from netip.AddrPort, kind byte, p []byte, reliable bool) {
	if !reliable {
		s.stats.ignored.Add(1)
		s.warn.Warn("mars: ignored an unreliable message", "from", from, "kind", kind)
		return
	}
	s.mu.Lock()
	if s.closed || s.tr == nil {
		s.mu.Unlock()
		return
	}
	defer s.mu.Unlock()
	if s.st != nil {
		s.storeMessage(inMsg{from: from, kind: kind, p: p})
		return
	}
	s.handle(inMsg{from: from, kind: kind, p: p})
}

func (s *Server) now() int64 { return int64(time.Since(s.epoch)) }

func (s *Server) run() {
	defer s.wg.Done()
	// The sweep period adds to how late a node is listed offline; a sweep
	// of 10,000 nodes costs well under a millisecond.
	every := min(max(s.opts.OfflineAfter/100, 5*time.Millisecond), 25*time.Millisecond)
	if s.st != nil {
		every = min(max(s.opts.OfflineAfter/20, 5*time.Millisecond), 250*time.Millisecond) // sweeps write to the store
	}
	sweep := time.NewTicker(every)
	defer sweep.Stop()
	save := time.NewTimer(time.Hour)
	save.Stop()
	defer save.Stop()
	saving := false
	for {
		select {
		case <-s.done:
			return
		case <-sweep.C:
			s.mu.Lock()
			s.kvTick()
			s.mu.Unlock()
			if s.st != nil {
				s.storeSweep()
				continue
			}
			s.mu.Lock()
			s.sweep()
			s.mu.Unlock()
		case <-s.saveNow:
			s.saveHeld()
		case <-save.C:
			saving = false
			s.mu.Lock()
			if s.persist.offer(s.snapshotData()) {
				s.dirty = false
			}
			s.mu.Unlock()
		}
		// Schedule a save when shared data changed; the check runs at every
		// sweep, so a change waits at most PersistInterval plus one sweep.
		s.mu.Lock()
		dirty := s.dirty
		s.mu.Unlock()
		if dirty && !saving && s.persist != nil {
			save.Reset(s.opts.PersistInterval)
			saving = true
		}
	}
}

func (s *Server) handle(m inMsg) {
	switch m.kind {
	case KindReport:
		s.handleReport(m)
	case KindLeave:
		s.handleLeave(m)
	case KindNodeStats:
		s.handleNodeStats(m)
	case KindKV:
		if s.noKV {
			s.refuse(m.from, "", 0, CodeBadMessage, fmt.Sprintf("unknown message kind 0x%02x", m.kind))
			return
		}
		s.handleKV(m)
	default:
		s.refuse(m.from, "", 0, CodeBadMessage, fmt.Sprintf("unknown message kind 0x%02x", m.kind))
	}
}

// saveHeld writes the shared data, then sends the replies that waited for
// it (persist before acknowledging). It runs on the server's own goroutine;
// reports arriving meanwhile are held for the next save.
func (s *Server) saveHeld() {
	s.mu.Lock()
	if len(s.held) == 0 || s.closed {
		s.mu.Unlock()
		return
	}
	d := s.snapshotData()
	held := s.held
	s.held = make(map[netip.AddrPort]heldReply)
	s.dirty = false
	s.mu.Unlock()
	if err := s.persist.save(d); err != nil {
		s.log.Error("mars: cannot save shared data; acknowledging the changes anyway", "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for to, h := range held {
		a := s.apps[h.app]
		if a == nil {
			continue
		}
		e := a.nodes[h.addr]
		if h.guest {
			e = a.guests[h.addr]
		}
		if e == nil || e.inc != h.inc {
			continue
		}
		e.durable = max(e.durable, h.ack)
		if e.ack == e.durable {
			e.unsaved = false
		}
		s.sendSync(to, a, h.addr, h.marsInc, h.ver, h.flags, h.echo, h.ack, h.dig)
	}
}

// refuse answers a message with an error and logs the cause (rate-limited).
func (s *Server) refuse(to netip.AddrPort, addr string, echo uint64, code int, msg string) {
	s.stats.bad.Add(1)
	s.warn.Warn("mars: refused message: "+causeOf(code), "from", to, "node", addr, "reason", msg)
	e := errorMsg{Addr: addr, Code: uint64(code), Message: msg, Echo: echo}
	s.buf = e.append(s.buf[:0])
	s.send(to, KindError, s.buf)
}

func causeOf(code int) string {
	switch code {
	case CodeBadMessage:
		return "malformed"
	case CodeBadApp:
		return "bad app name"
	case CodeBadKey:
		return "bad shared data key"
	case CodeBadNode:
		return "bad node info"
	case CodeLimit:
		return "limit reached"
	case CodeSuperseded:
		return "superseded incarnation"
	}
	return "other"
}

// queued is how many bytes a peer has not acknowledged yet.
func (s *Server) queued(to netip.AddrPort) int {
	if st, ok := s.tr.Peer(to); ok {
		return st.Queued
	}
	return 0
}

// fits reports whether n more bytes can be queued on top of q without
// blocking (rudp always accepts a message into an empty queue).
func (s *Server) fits(q, n int) bool {
	limit := s.opts.Transport.MaxQueued
	if limit <= 0 {
		limit = defaultMaxQueued
	}
	return q == 0 || q+n <= limit
}

func (s *Server) send(to netip.AddrPort, kind byte, p []byte) {
	if !s.fits(s.queued(to), len(p)+frameOverheadSize) {
		s.stats.skipped.Add(1)
		s.warn.Warn("mars: peer queue full, dropping a reply", "peer", to)
		return
	}
	s.sendNoWait(to, kind, p)
}

// sendNoWait queues one reply without ever waiting; it reports whether the
// reply was queued.
func (s *Server) sendNoWait(to netip.AddrPort, kind byte, p []byte) bool {
	return s.sendNoWaitMsg(to, kind, nil, p)
}

// sendNoWaitMsg is sendNoWait of a message in two parts (sent as one).
func (s *Server) sendNoWaitMsg(to netip.AddrPort, kind byte, head, body []byte) bool {
	err := s.tr.SendMsg(context.Background(), to, kind, head, body, rudp.SendOptions{NoWait: true})
	switch {
	case err == nil:
		return true
	case errors.Is(err, rudp.ErrWouldBlock):
		s.stats.skipped.Add(1)
		s.warn.Warn("mars: peer queue full, dropping a reply", "peer", to)
	case !errors.Is(err, rudp.ErrClosed):
		s.warn.Warn("mars: send failed", "peer", to, "err", err)
	}
	return false
}

// app returns the state of an app, creating it if there is room.
func (s *Server) app(name string) *appState {
	a := s.apps[name]
	if a == nil && len(s.apps) < s.opts.MaxApps {
		a = newAppState(name, &s.clock)
		a.onState = s.stateChanged
		s.apps[name] = a
	}
	return a
}

// sweep applies liveness: silent nodes go offline, then away; tombstones
// expire; empty apps are forgotten.
func (s *Server) sweep() {
	s.mlog.tick()
	now := s.now()
	offline, remove := int64(s.opts.OfflineAfter), int64(s.opts.RemoveAfter)
	maxTombs := s.opts.MaxNodes + s.opts.MaxSharedKeys
	for name, a := range s.apps {
		for addr, e := range a.nodes {
			silent := now - e.lastSeen
			switch {
			case silent > remove:
				s.nodeRemoved(a, e, now)
				a.removeNode(addr, goneRemoved, now)
			case silent > offline && e.alive:
				e.alive = false
				a.nodeChanged(e)
			}
		}
		for addr, g := range a.guests {
			if now-g.lastSeen > remove {
				delete(a.guests, addr)
			}
		}
		a.expireTombs(now, int64(s.opts.TombstoneTTL), maxTombs)
		a.compact()
		if a.fullVer != a.ver && now-a.fullAt >= fullReuse {
			a.fullParts = nil // free it
		}
		if a.empty() {
			delete(s.apps, name)
		}
	}
}
