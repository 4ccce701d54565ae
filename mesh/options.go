package mesh

import (
	"log/slog"
	"net"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
	"go.opentelemetry.io/otel/trace"
)

// Option adjusts a node built by New.
type Option func(*options)

type options struct {
	typ, role, endPoint, app string
	values                   map[string]interface{}
	guest                    bool
	logger                   *slog.Logger
	syncInterval             time.Duration
	handlers                 *registry
	limits                   InboundLimits
	maxHandlers              int
	rudpConfig               func(*rudp.Config)   // tests: adjust the transport
	conn                     net.PacketConn       // WithPacketConn
	inline                   bool                 // WithInlineHandlers
	tracerProvider           trace.TracerProvider // WithTracerProvider
}

// WithType sets the node type (default "node").
func WithType(t string) Option { return func(o *options) { o.typ = t } }

// WithRole sets the node role (DGSRole, HTTPRole, TCPRole, UDPRole or your own).
func WithRole(r string) Option { return func(o *options) { o.role = r } }

// WithEndPoint sets the public endpoint game clients use.
func WithEndPoint(ep string) Option { return func(o *options) { o.endPoint = ep } }

// WithApp sets the app name: the MARS namespace the node lives in.
func WithApp(app string) Option { return func(o *options) { o.app = app } }

// WithValues sets initial metadata values.
func WithValues(v map[string]interface{}) Option { return func(o *options) { o.values = v } }

// AsGuest makes the node a guest: it syncs the cluster view and can send
// and receive, but MARS never lists it.
func AsGuest() Option { return func(o *options) { o.guest = true } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithSyncInterval sets how often the node reports to MARS (default 1 s).
func WithSyncInterval(d time.Duration) Option { return func(o *options) { o.syncInterval = d } }

// WithPacketConn makes the node send and receive on conn instead of
// binding the configured address and port: for tests, an endpoint of an
// in-memory network (rudp/faultnet) or a socket wrapped to inject faults
// (package meshtest does both). The node's address is conn's local
// address, and the node owns conn: Shutdown closes it.
func WithPacketConn(conn net.PacketConn) Option { return func(o *options) { o.conn = conn } }
