package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/ratelog"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// portScan is how many ports New tries, from the configured one upwards.
const portScan = 1000

// Node is both a live mesh node and a node record, because the mesh API
// uses the one name for both:
//
//   - New, Setup and Default give a live node: a UDP port carrying its
//     messages, a MARS client keeping its view of the cluster, and its
//     handlers. Its methods are the mesh API; it is safe for concurrent use.
//     Its exported fields describe it as it was created.
//   - GetNode and GetNodeByEndPoint give records: the exported fields of a
//     node as the local view lists it. A record has no live node inside and
//     its methods must not be called.
type Node struct {
	Addr   string // mesh address, "ip:port"
	Type   string
	Role   string
	Values map[string]interface{}
	Self   bool // the record is of the node that looked it up

	*node
}

// node is the live part of a Node: components that each own their state
// and lock, wired together by New (build). Node's methods are the public
// API; the router (receive.go) takes the transport's callbacks to the
// component each is for.
type node struct {
	base // transport, own address, loggers, clock: every component may use it

	cfg   config.Mesh
	mc    *mars.Client // the node's view of the cluster; lookups read it (lookup.go)
	guest bool

	life     *lifecycle   // closed, done, handler goroutines, readiness check (lifecycle.go)
	names    *peerNames   // peer address strings (names.go)
	strict   *strictCheck // strictCheckForExternal (strict.go)
	handlers *registry    // handlers by command ID (registry.go)
	ev       *events      // the dispatcher of every user callback (events.go)
	calls    *callTable   // requests waiting for responses, deadline sweeper (calls.go)
	in       *inbound     // inbound work: bounds, queues, workers, serving map (inbound.go, serve.go)
	send     *sender      // reliable sends that wait within a bound, or hand off (sender.go)
	fan      *fanout      // SendMany, USendMany and relays (fanout.go)
	streams  *streamTable // streams (stream_node.go, stream.go)
	buffer   *sendBuffer  // sendInterval batches; nil without sendInterval (buffer.go)
	metrics  meshMetrics  // counters for Collector (metrics.go)
	peers    peerIncs     // the incarnation of each peer session (membership.go)
	own      ownerTable   // owner candidates and holds (owner.go, owner_hold.go)
	ps       *pubsub      // subscriptions, interest and routes (pubsub*.go)

	closeOnce sync.Once
	closeErr  error
	bg        sync.WaitGroup // the stats report goroutine (metrics_report.go)
}

// unauthenticatedWarning is logged once by a node (New) or MARS
// (StartAsMARS; mars-server has its own copy) that binds a non-loopback
// address without a cluster key.
const unauthenticatedWarning = "no cluster key (meshKey, meshKeyFile): traffic on this non-loopback address is " +
	"neither authenticated nor encrypted; anyone who reaches the port can join, read and send"

// unauthenticated reports whether a transport without keys is bound where
// others than this host can reach it.
func unauthenticated(keys [][config.KeySize]byte, bound netip.AddrPort) bool {
	return len(keys) == 0 && !bound.Addr().Unmap().IsLoopback()
}

// New validates cfg, binds the node's UDP port (scanning upwards from
// cfg.Port while ports are taken; WithPacketConn gives it a socket
// instead), starts syncing with MARS and returns.
// With cluster keys (cfg.Keys) all of the node's traffic is sealed; without
// them a node bound to a non-loopback address logs one warning that its
// traffic is unauthenticated.
// OnReady and OnInitialSync callbacks fire after the first sync.
func New(cfg config.Mesh, opts ...Option) (*Node, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.typ == "" {
		o.typ = "node"
	}
	if o.handlers == nil {
		o.handlers = newRegistry()
	}
	owned := o.conn // WithPacketConn: closed here if New fails before the transport takes it
	defer func() {
		if owned != nil {
			owned.Close()
		}
	}()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bind, err := cfg.BindAddress()
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(cfg.Port)
	if err != nil {
		return nil, fmt.Errorf("mesh: port %q: %w", cfg.Port, err)
	}
	n := &Node{Type: o.typ, Role: o.role, Self: true}
	n.build(cfg, o)
	keys, err := cfg.Keys()
	if err != nil {
		n.life.cancel()
		return nil, err
	}
	rc := rudp.Config{
		RetryInterval: cfg.RetryIntervalDuration(),
		RetryTimeout:  cfg.RetryTimeoutDuration(),
		OnMessage:     n.onMessage,
		OnPeerUp:      n.onPeerUp,
		OnPeerDown:    n.onPeerDown,
		Logger:        o.logger,
		Keys:          keys,
		Features:      featureStreamWindow,
	}
	if o.inline {
		n.inlineConfig(&rc) // inline.go
	}
	if o.rudpConfig != nil {
		o.rudpConfig(&rc)
	}
	if rc.Features&featureStreamWindow == 0 {
		n.streams.window = streamWindowV1 // tests: a node of the previous revision
	}
	if o.conn != nil {
		owned = nil
		n.tr, err = rudp.New(o.conn, rc) // closes it on failure
	} else {
		n.tr, err = listenScan(bind, port, portScan, rc)
	}
	if err != nil {
		n.life.cancel()
		return nil, fmt.Errorf("mesh: %w", err)
	}
	if unauthenticated(keys, n.tr.LocalAddr()) {
		n.log.Warn(unauthenticatedWarning, "addr", n.tr.LocalAddr().String())
	}
	n.self = advertised(n.tr.LocalAddr(), cfg.MarsAddr())
	n.selfStr = n.self.String()
	n.Addr = n.selfStr
	if cfg.SendInterval > 0 {
		n.buffer = newSendBuffer(n.tr, n.life.ctx, func(to netip.AddrPort, err error) {
			n.ev.sendFailed(n.names.name(to), err)
		}, cfg.SendIntervalDuration(), cfg.RetryTimeoutDuration())
	}
	n.mc, err = mars.NewClient(mars.ClientConfig{
		Transport:   n.tr,
		MarsAddr:    strings.Join(cfg.MarsAddrs(), ","), // several: replicas
		MarsAddrTTL: marsTTL(cfg),
		App:         o.app,
		Interval:    o.syncInterval,
		Guest:       o.guest,
		Addr:        n.selfStr,
		Type:        o.typ,
		Role:        o.role,
		EndPoint:    o.endPoint,
		Values:      o.values,
		Logger:      o.logger,
		Dispatcher:  n.ev.d, // the node's one dispatcher runs the client's callbacks too

		FailoverAfter: cfg.RetryTimeoutDuration(),
	})
	if err != nil {
		n.life.cancel()
		n.tr.Close()
		return nil, fmt.Errorf("mesh: %w", err)
	}
	n.peers.view.Store(n.mc.View())
	n.calls.start()
	n.mc.OnInitialSync(n.ev.firstSync)
	n.mc.Start()
	n.startStatsReport() // counters to MARS for its dashboard (metrics_report.go)
	n.log.Debug("mesh node started", "addr", n.selfStr, "guest", n.guest)
	return n, nil
}

// build makes the node's components and wires them. It runs before the
// port is bound (the transport may deliver as soon as it listens); New
// sets the transport, the own address and the MARS client afterwards, and
// the funcs given to components read those when called.
func (n *Node) build(cfg config.Mesh, o options) {
	n.node = &node{
		base:     base{log: o.logger, warn: ratelog.New(o.logger, 10*time.Second), epoch: time.Now(), tracing: new(tracing)},
		cfg:      cfg,
		guest:    o.guest,
		handlers: o.handlers,
		life:     newLifecycle(),
		names:    new(peerNames),
	}
	n.tracing.set(o.tracerProvider)
	n.strict = newStrictCheck(cfg.StrictCheckForExternal, &n.base, n.names, func(addr string) bool {
		_, ok := n.mc.View().Node(addr)
		return ok
	})
	n.calls = newCallTable(&n.base, n.life.done)
	n.ev = newEvents(&n.base)
	if o.maxHandlers > 0 {
		o.limits.MaxHandlers = o.maxHandlers
	}
	n.in = newInbound(&n.base, n.life, o.limits)
	n.send = &sender{b: &n.base, life: n.life}
	n.fan = &fanout{b: &n.base, life: n.life, names: n.names, send: n.send, in: n.in, strict: n.strict,
		metrics: &n.metrics, view: func() *mars.View { return n.mc.View() },
		deliverHere: n.deliverCommand, failed: n.ev.sendFailed}
	n.fan.init(n.clock)
	n.streams = newStreamTable(&n.base, n.life, n.names, n.strict, n.handlers)
	n.streams.drainNotice, n.streams.drainHeard = n.drainNotice, n.drainHeard
	n.ps = newPubsub(&n.base, n.life)
	n.ps.push = n.pushInterest
	n.ps.answerTo = func(r *replyTo, payload []byte) { n.respondSoon(r.from, r.id, statusOK, payload, r.deadline) }
}

func marsTTL(cfg config.Mesh) time.Duration {
	if cfg.MarsAddressCacheTTL == 0 {
		return -1 // resolve every time
	}
	return cfg.MarsAddressCacheTTLDuration()
}

// advertised turns a bound address into one peers can reach: an
// unspecified IP (0.0.0.0) is replaced by the local IP that routes to MARS.
func advertised(bound netip.AddrPort, marsAddr string) netip.AddrPort {
	if !bound.Addr().IsUnspecified() {
		return bound
	}
	c, err := net.Dial("udp", marsAddr)
	if err != nil {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bound.Port())
	}
	defer c.Close()
	ip := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return netip.AddrPortFrom(ip, bound.Port())
}

// IsGuest reports whether the node joined as a guest.
func (n *Node) IsGuest() bool { return n.guest }

// Mars gives access to the node's MARS client (its view of the cluster).
func (n *Node) Mars() *mars.Client { return n.mc }

// Ready is closed once the node has synced with MARS. With MARS down it
// stays open: bound the wait with WaitReady, or select on Ready and a timer.
func (n *Node) Ready() <-chan struct{} { return n.mc.Ready() }
