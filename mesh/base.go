package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/marsmesh/marsmesh/internal/ratelog"
	"github.com/marsmesh/marsmesh/rudp"
)

// base is what every component of a node may use: its transport and own
// address (set by New once the port is bound, before New returns), its
// loggers and its clock. Nothing in it changes after New.
type base struct {
	tr      *rudp.Transport
	self    netip.AddrPort
	selfStr string
	log     *slog.Logger
	warn    *ratelog.Logger
	epoch   time.Time // monotonic origin of clock()
	tracing *tracing  // the tracer, nil when off (tracing.go); the pointer never changes
}

// clock is the node's monotonic time in nanoseconds (deadlines and TTLs
// never follow wall-clock jumps).
func (b *base) clock() int64 { return int64(time.Since(b.epoch)) }

// warnOnce logs a warning at most once per period per cause.
func (b *base) warnOnce(cause string, args ...any) {
	b.warn.Warn(cause, append(args, "node", b.selfStr)...)
}

// bad logs a malformed message from a peer (rate-limited).
func (b *base) bad(cause string, from netip.AddrPort) {
	b.warnOnce("mesh: dropped malformed message: "+cause, "from", from)
}

// protect runs a handler, turning a panic into an error for the caller.
func (b *base) protect(cmd uint16, f func() ([]byte, error)) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("mesh: handler panicked", "cmd", cmd, "panic", r)
			resp, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return f()
}

// resolve parses a mesh address ("ip:port", or "host:port" resolved once).
func resolve(addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: mesh address %q (want host:port): %w", rudp.ErrInvalidAddr, addr, err)
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
