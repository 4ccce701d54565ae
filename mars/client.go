package mars

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/internal/dispatch"
	"github.com/marsmesh/marsmesh/internal/ratelog"
)

// Transport is what a Client needs from the node's rudp transport
// (*rudp.Transport satisfies it). If it also has an Incarnation() uint64
// method, the client uses that incarnation.
type Transport interface {
	Send(to netip.AddrPort, kind byte, parts ...[]byte) error
	LocalAddr() netip.AddrPort
}

// ClientConfig configures a Client. Zero values mean the defaults.
type ClientConfig struct {
	// Transport carries the client's messages; required.
	Transport Transport
	// MarsAddr is MARS's "host:port"; required. Several, separated by
	// commas, are MARS replicas (see failover.go): the client uses one at a
	// time and moves to the next after FailoverAfter of silence.
	MarsAddr string
	// FailoverAfter is how long the current MARS may stay silent before the
	// client moves to the next address (when there are several); time the
	// client's loop stood still (process stopped or short of CPU) does not
	// count. Default 3 s (the mesh passes retryTimeout).
	FailoverAfter time.Duration
	// MarsAddrTTL is how long a resolved MarsAddr is reused. Default 60 s;
	// negative resolves before every report (config.Mesh's
	// marsAddressCacheTTL of 0).
	MarsAddrTTL time.Duration
	// App is the app name (namespace); "" is the default namespace. At most
	// MaxAppLen bytes of printable UTF-8.
	App string
	// Interval is the report period. Default 1 s.
	Interval time.Duration
	// InTouchSpan is how recent MARS's last reply must be for InTouch to
	// hold. Default 3 × Interval. It must be longer than Interval (MARS
	// replies about once per Interval; a span that short would flap).
	InTouchSpan time.Duration
	// Guest nodes sync the view (and may set shared data) but are never listed.
	Guest bool

	// Addr overrides the node's mesh address (default: the transport's
	// LocalAddr().String()). Incarnation overrides the node's incarnation
	// (default: the transport's, if it has one, else random).
	Addr        string
	Incarnation uint64
	// What the node says about itself; each can be changed later with a setter.
	Type     string
	Role     string
	Status   Status // default StatusOnline
	EndPoint string
	Values   map[string]interface{}

	// ReregisterJitter spreads re-registration after a MARS restart over
	// [0, ReregisterJitter). Default 500 ms.
	ReregisterJitter time.Duration
	// Debounce is how long a local change waits for more before it is
	// reported. Default 5 ms.
	Debounce time.Duration
	// Logger receives warnings (rate-limited). Default slog.Default().
	Logger *slog.Logger
	// KVTimeout bounds a key-value or lease call whose context has no
	// deadline. Default 10 s.
	KVTimeout time.Duration
	// Dispatcher runs the client's callbacks; a node passes its own so that
	// every user callback of the node goes through one dispatcher (and
	// closes it). Default: the client's own, closed by Close.
	Dispatcher *dispatch.Dispatcher
}

// Client keeps a node registered with MARS and its View in sync. Create it
// with NewClient, then Start it. The mesh layer passes it every message of a
// MARS kind (HandleMessage) and, optionally, the transport's peer-down
// events (HandlePeerDown), which let it retry at once when MARS restarts.
//
// Callbacks (OnUpdate, OnSharedDataUpdate, OnNodeEvent, ...) run on the
// dispatcher (ClientConfig.Dispatcher), never on the client's loop and never
// under a lock of the client or the view, so they may call any lookup or
// setter, and one that blocks holds up neither the syncs nor the others.
type Client struct {
	cfg   ClientConfig
	disp  *dispatch.Dispatcher
	owned bool // disp is the client's own: Close closes it
	tr    Transport
	addr  string
	inc   uint64
	log   *slog.Logger
	warn  *ratelog.Logger
	view  *View
	epoch time.Time

	inbox    chan clientMsg
	kick     chan struct{}
	peerDown chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	started  atomic.Bool
	closed   atomic.Bool
	closeMu  sync.Mutex

	mars      atomic.Pointer[netip.AddrPort]   // resolved MARS address
	candList  atomic.Pointer[[]netip.AddrPort] // every resolved MARS address (failover.go)
	lastReply atomic.Int64                     // client clock (ns since epoch) of MARS's last reply; 0 = never
	ready     chan struct{}
	dropped   atomic.Uint64 // MARS-kind messages ignored by HandleMessage

	syncMu sync.Mutex
	syncN  uint64        // completed syncs
	syncCh chan struct{} // closed and replaced after every sync

	cb callbacks

	// mu guards the node's own state and its outbox of changes.
	mu         sync.Mutex
	app        string
	oldApp     *string // set by SetApp until the loop has left the old app
	info       nodeInfo
	values     map[string]interface{}
	seq        uint64              // last local change number
	infoSeq    uint64              // change number of the latest info change
	ops        map[string]op       // unacknowledged shared-data changes, latest per key
	recent     map[string]recentOp // acknowledged changes other views may not hold yet
	acked      uint64              // MARS has applied every change up to here
	sentSeq    uint64              // changes up to here were sent (maybe unacknowledged); lowered to resend
	sentMax    uint64              // changes up to here have left at least once (never lowered)
	needFull   bool                // send the complete state (register)
	reseed     bool                // include the view's shared data (new MARS)
	seedAt     int64               // Unix ms of the view the seed comes from
	lastErr    error
	registered bool  // some MARS has acknowledged a registration of ours
	life       State // what the node declares: joining, online, draining

	// Owned by the loop goroutine.
	marsInc    uint64 // incarnation of the MARS we talk to
	regAt      time.Time
	graceOn    bool
	part       *partialSync
	buf        []byte
	resolvedAt time.Time
	marsAddrs  []string         // the entries of MarsAddr
	cands      []netip.AddrPort // resolved MARS addresses, in order
	cur        int              // the one in use
	switchedAt int64            // client clock of the last move to another address
	failJitter time.Duration
	judgedAt   int64       // client clock of the last maybeFailover
	pauseBase  int64       // the start of the silence paused counts in
	paused     int64       // how long the loop stood still during that silence
	initial    bool        // the initial sync happened
	lost       bool        // "lost MARS" was logged; "MARS back" is next
	replicas   replicaBook // what the client knows of each MARS address (replicas.go)
	soonArmed  bool
	look       lookBack // clientsync.go

	kv kvClient // the key-value store and leases (kv_client.go)
}

// recentOp is a shared-data change MARS acknowledged at ackAt (client
// clock). Until MARS has kept answering for recentSpan after that, other
// nodes' views may not hold it, and their re-registration seeds after a
// MARS restart would bring back the value it replaced; so on a new MARS the
// writer sends it again, as a change, and it wins over seeds.
type recentOp struct {
	op    op
	ackAt int64
}

type clientMsg struct {
	from netip.AddrPort
	kind byte
	p    []byte
}

type partialSync struct {
	head syncHead
	body syncBody
	next uint64
}

// NewClient checks cfg and builds a client; nothing runs until Start.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Transport == nil {
		return nil, errors.New("mars: ClientConfig.Transport is required")
	}
	marsAddrs, err := splitMarsAddrs(cfg.MarsAddr)
	if err != nil {
		return nil, err
	}
	if cfg.FailoverAfter <= 0 {
		cfg.FailoverAfter = 3 * time.Second
	}
	if err := CheckApp(cfg.App); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.InTouchSpan <= 0 {
		cfg.InTouchSpan = 3 * cfg.Interval
	}
	if cfg.InTouchSpan <= cfg.Interval {
		return nil, fmt.Errorf("mars: InTouchSpan (%v) must be longer than Interval (%v): MARS replies about once per Interval", cfg.InTouchSpan, cfg.Interval)
	}
	if cfg.MarsAddrTTL == 0 {
		cfg.MarsAddrTTL = 60 * time.Second
	}
	if cfg.ReregisterJitter <= 0 {
		cfg.ReregisterJitter = 500 * time.Millisecond
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 5 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Status == 0 {
		cfg.Status = StatusOnline
	}
	if cfg.KVTimeout <= 0 {
		cfg.KVTimeout = 10 * time.Second
	}
	c := &Client{
		cfg:      cfg,
		tr:       cfg.Transport,
		addr:     cfg.Addr,
		inc:      cfg.Incarnation,
		log:      cfg.Logger,
		warn:     ratelog.New(cfg.Logger, 10*time.Second),
		epoch:    time.Now(),
		inbox:    make(chan clientMsg, 256),
		kick:     make(chan struct{}, 1),
		peerDown: make(chan struct{}, 1),
		done:     make(chan struct{}),
		ready:    make(chan struct{}),
		syncCh:   make(chan struct{}),
		app:      cfg.App,
		ops:      make(map[string]op),
		recent:   make(map[string]recentOp),
		needFull: true,
		life:     StateJoining,
		disp:     cfg.Dispatcher,

		marsAddrs: marsAddrs,
	}
	if c.addr == "" {
		c.addr = cfg.Transport.LocalAddr().String()
	}
	if err := checkAddr("mesh address", c.addr, true); err != nil {
		return nil, err
	}
	if c.inc == 0 {
		if ti, ok := cfg.Transport.(interface{ Incarnation() uint64 }); ok {
			c.inc = ti.Incarnation()
		}
	}
	if c.inc == 0 {
		c.inc = newIncarnation()
	}
	c.info = nodeInfo{Type: cfg.Type, Role: cfg.Role, Status: cfg.Status, EndPoint: cfg.EndPoint}
	if err := c.info.check(); err != nil {
		return nil, err
	}
	b, err := encodeValues(cfg.Values)
	if err != nil {
		return nil, err
	}
	c.info.Values, c.values = b, ownValues(b)
	c.view = newView(c.addr, c.inc)
	if c.disp == nil {
		c.disp, c.owned = dispatch.New(c.log), true
	}
	c.cb.syncs = c.syncLane()
	c.kvInit()
	return c, nil
}

// Start begins reporting to MARS. It is idempotent.
func (c *Client) Start() {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed.Load() || !c.started.CompareAndSwap(false, true) {
		return
	}
	c.wg.Add(1)
	go c.run()
}

// Close stops the client and tells MARS the node leaves, so MARS removes it
// at once (gone, ReasonLeft). It is idempotent and
// returns once the client's goroutine has stopped. The leave is queued on
// the transport: close the transport after the client so it is flushed.
func (c *Client) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed.Swap(true) {
		return nil
	}
	close(c.done)
	c.wg.Wait()
	c.kvClose(c.started.Load()) // releases the leases first
	if !c.started.Load() {
		c.closeDispatcher()
		return nil
	}
	if to := c.mars.Load(); to != nil {
		c.mu.Lock()
		l := leave{App: c.app, Addr: c.addr, Inc: c.inc}
		c.mu.Unlock()
		c.tr.Send(*to, KindLeave, l.append(nil))
	}
	c.closeDispatcher()
	return nil
}

// closeDispatcher closes the client's own dispatcher, letting queued
// callbacks run for a moment.
func (c *Client) closeDispatcher() {
	if c.owned {
		c.disp.Close(2 * time.Second)
	}
}

// abort stops the client without the graceful leave, as if the process
// died (tests use it).
func (c *Client) abort() {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed.Swap(true) {
		return
	}
	close(c.done)
	c.wg.Wait()
	c.kvClose(false)
	c.closeDispatcher()
}

// HandleMessage takes a message of a MARS kind from the transport, with
// the transport's reliable flag. It is meant for the transport's read
// goroutine: it never blocks (when the client is far behind, the message
// is dropped and the next report asks again). Only reliable messages (they
// arrive on an established session) from a MARS address of MarsAddr are
// taken (a sync from another one than the current makes it current); anything else is counted (Dropped) and ignored, so a
// forged datagram cannot rewrite the view.
func (c *Client) HandleMessage(from netip.AddrPort, kind byte, payload []byte, reliable bool) {
	if !reliable {
		c.dropped.Add(1)
		c.warn.Warn("mars: ignoring an unreliable MARS message", "from", from)
		return
	}
	if m := c.mars.Load(); (m == nil || *m != from) && !c.isCandidate(from) {
		c.dropped.Add(1)
		c.warn.Warn("mars: ignoring a MARS message from an unexpected address", "from", from)
		return
	}
	if kind == KindKVReply {
		c.kvHandleReply(payload)
		return
	}
	if kind != KindSync && kind != KindError {
		c.dropped.Add(1)
		c.warn.Warn("mars: ignoring a message of an unexpected kind", "kind", kind)
		return
	}
	select {
	case c.inbox <- clientMsg{from, kind, payload}:
	default:
		c.warn.Warn("mars: client inbox full, dropping a MARS message")
	}
}

// Dropped is how many MARS-kind messages HandleMessage ignored (unreliable,
// not from MARS, or of a kind MARS never sends).
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// HandlePeerDown tells the client the transport lost a peer. If it is MARS,
// the client re-sends what MARS may not have received, at once: forwarding
// the transport's OnPeerDown shortens recovery after a MARS restart by up
// to one Interval. Never blocks.
func (c *Client) HandlePeerDown(addr netip.AddrPort) {
	if m := c.mars.Load(); m == nil || *m != addr {
		return
	}
	select {
	case c.peerDown <- struct{}{}:
	default:
	}
}

// View is the node's local view of its app.
func (c *Client) View() *View { return c.view }

// Addr is the node's mesh address as MARS lists it.
func (c *Client) Addr() string { return c.addr }

// Incarnation is the node's incarnation as MARS lists it.
func (c *Client) Incarnation() uint64 { return c.inc }

// App returns the node's app name.
func (c *Client) App() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.app
}

// Self returns what the node says about itself (not what MARS lists).
func (c *Client) Self() Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	vals := make(map[string]interface{}, len(c.values))
	for k, v := range c.values {
		vals[k] = v
	}
	return Node{
		Addr: c.addr, Incarnation: c.inc, Type: c.info.Type, Role: c.info.Role,
		Status: c.info.Status, EndPoint: c.info.EndPoint, Values: vals, Self: true,
	}
}

// InTouch reports whether MARS replied within the accepted span
// (InTouchSpan, default 3 intervals). It backs mesh.IsPartOfCluster.
func (c *Client) InTouch() bool {
	t := c.lastReply.Load()
	return t != 0 && time.Duration(c.clock()-t) <= c.cfg.InTouchSpan
}

// SyncAge returns how long ago MARS last answered, and false if it never
// has.
func (c *Client) SyncAge() (time.Duration, bool) {
	t := c.lastReply.Load()
	if t == 0 {
		return 0, false
	}
	return time.Duration(c.clock() - t), true
}

func (c *Client) clock() int64 { return int64(time.Since(c.epoch)) }

// Ready is closed after the first sync with MARS in which the node sees
// itself online in its own view (a guest: after the first sync). From then
// on every node that syncs lists it online too.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// LastError returns the last error MARS reported for this node (a
// *RemoteError), or nil.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// WaitForLatestNodeData waits until two more syncs with MARS complete, so
// every change other nodes made before the call has had a full report
// interval to reach MARS and come back. It gives up after 3 intervals
// (ErrTimeout) or when the client closes (ErrClosed).
func (c *Client) WaitForLatestNodeData() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*c.cfg.Interval)
	defer cancel()
	err := c.WaitForLatestNodeDataContext(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: no two syncs within %v", ErrTimeout, 3*c.cfg.Interval)
	}
	return err
}

// WaitForLatestNodeDataContext is WaitForLatestNodeData bounded by ctx.
func (c *Client) WaitForLatestNodeDataContext(ctx context.Context) error {
	c.syncMu.Lock()
	target := c.syncN + 2
	c.syncMu.Unlock()
	for {
		c.syncMu.Lock()
		n, ch := c.syncN, c.syncCh
		c.syncMu.Unlock()
		if n >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrClosed
		}
	}
}

func (c *Client) syncDone() {
	c.syncMu.Lock()
	c.syncN++
	close(c.syncCh)
	c.syncCh = make(chan struct{})
	c.syncMu.Unlock()
}

// changed records a local change (under c.mu) and wakes the loop.
func (c *Client) changedLocked() uint64 {
	c.seq++
	return c.seq
}

func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
