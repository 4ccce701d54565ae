package mars

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// ServerOptions configures a MARS server. Zero values mean the defaults
// (DefaultServerOptions lists them, Validate the allowed ranges).
type ServerOptions struct {
	// OfflineAfter: a node silent this long is listed offline. Default 3 s.
	OfflineAfter time.Duration
	// RemoveAfter: a node silent this long is removed. Default 10 s. A node
	// that leaves gracefully is offline at once and removed RemoveAfter
	// after its last report.
	RemoveAfter time.Duration
	// DataDir, when set, keeps the shared data of every app in
	// DataDir/shared-data.msgpack: loaded at start, written (atomically) at
	// most once per PersistInterval while it changes, on Close, and before
	// MARS acknowledges a node's shared-data change (the reply waits). The
	// key-value store and leases go to DataDir/kv.wal (kv_wal.go), synced
	// before MARS acknowledges a change.
	DataDir string
	// PersistInterval bounds how often the shared data is written. Default 1 s.
	PersistInterval time.Duration
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Transport tunes the server's rudp transport. OnMessage is replaced;
	// OnPeerUp and OnPeerDown are kept (for monitoring; they must not
	// block). CloseTimeout defaults to 200 ms here.
	Transport rudp.Config
	// RequireApp refuses reports with the empty (default) app name.
	RequireApp bool
	// MaxApps bounds the number of app names. Default 1,024.
	MaxApps int
	// MaxNodes bounds the nodes of one app, and separately its guests.
	// Default 100,000.
	MaxNodes int
	// MaxSharedKeys bounds the shared-data keys of one app. Default 100,000.
	MaxSharedKeys int
	// TrustReportedAddr turns off the check that a report or leave for a
	// mesh address comes from that address's own session. Leave it off:
	// with it, any peer that reaches MARS can speak for any node. It exists
	// for load generators that simulate many nodes on one socket.
	TrustReportedAddr bool
	// Store, when set, keeps the state in a shared store (see Store): every
	// server over one store is a replica of one registry, and any of them
	// serves any node. Nil keeps the state in this server's memory. The
	// server does not close the Store. DataDir must be empty with a Store.
	Store Store
	// TombstoneTTL is how long removed nodes and keys are remembered for
	// deltas; a node that has not synced for longer gets a full snapshot.
	// Default 5 minutes. At most MaxSharedKeys+MaxNodes tombstones are kept.
	TombstoneTTL time.Duration

	// MaxKVKeys bounds the keys of one app's key-value store. Default 100,000.
	MaxKVKeys int
	// MaxKVBytes bounds the bytes of keys and values of one app's
	// key-value store. Default 64 MiB.
	MaxKVBytes int
	// MaxLeases bounds the leases of one app. Default 100,000.
	MaxLeases int
	// MaxLeaseTTL is the longest lease TTL a node may ask for. Default 60 s.
	MaxLeaseTTL time.Duration
	// LeaseHold is how long a server without DataDir or Store refuses
	// claims after it starts (ErrUnavailable): a previous run of it may
	// have granted leases whose holders still count on them. Their
	// holders' renewals take them over at once. Default MaxLeaseTTL;
	// negative: no hold (only where no earlier MARS ran, as in tests).
	LeaseHold time.Duration
}

func (o ServerOptions) withDefaults() ServerOptions {
	if o.OfflineAfter <= 0 {
		o.OfflineAfter = 3 * time.Second
	}
	if o.RemoveAfter <= 0 {
		o.RemoveAfter = 10 * time.Second
	}
	if o.RemoveAfter < o.OfflineAfter {
		o.RemoveAfter = o.OfflineAfter
	}
	if o.PersistInterval <= 0 {
		o.PersistInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Transport.CloseTimeout <= 0 {
		o.Transport.CloseTimeout = 200 * time.Millisecond
	}
	if o.Transport.Logger == nil {
		o.Transport.Logger = o.Logger
	}
	if o.MaxApps <= 0 {
		o.MaxApps = 1024
	}
	if o.MaxNodes <= 0 {
		o.MaxNodes = 100_000
	}
	if o.MaxSharedKeys <= 0 {
		o.MaxSharedKeys = 100_000
	}
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = 5 * time.Minute
	}
	if o.MaxKVKeys <= 0 {
		o.MaxKVKeys = 100_000
	}
	if o.MaxKVBytes <= 0 {
		o.MaxKVBytes = 64 << 20
	}
	if o.MaxLeases <= 0 {
		o.MaxLeases = 100_000
	}
	if o.MaxLeaseTTL <= 0 {
		o.MaxLeaseTTL = time.Minute
	}
	o.MaxLeaseTTL = max(o.MaxLeaseTTL, MinLeaseTTL)
	switch {
	case o.LeaseHold == 0:
		o.LeaseHold = o.MaxLeaseTTL
	case o.LeaseHold < 0:
		o.LeaseHold = 0
	}
	return o
}

// DefaultServerOptions returns the options a zero ServerOptions stands for,
// each default filled in (Logger, Store and the transport's callbacks stay
// nil; the transport's other zero fields take rudp's defaults).
func DefaultServerOptions() ServerOptions {
	o := ServerOptions{}.withDefaults()
	o.Logger, o.Transport.Logger = nil, nil
	return o
}

// Validate checks the options Listen and NewServer use (they call it): a
// zero field takes its default; durations and limits may not be negative
// (LeaseHold may: no hold; a RemoveAfter shorter than OfflineAfter is
// raised to it); DataDir must be empty with a Store; and
// the transport options must pass rudp.Config.Validate. The error names
// the first field out of range and wraps ErrBadOptions.
func (o ServerOptions) Validate() error {
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"OfflineAfter", o.OfflineAfter}, {"RemoveAfter", o.RemoveAfter}, {"PersistInterval", o.PersistInterval},
		{"TombstoneTTL", o.TombstoneTTL}, {"MaxLeaseTTL", o.MaxLeaseTTL},
	}
	for _, d := range durs {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v, want 0 (default) or more", ErrBadOptions, d.name, d.v)
		}
	}
	ints := []struct {
		name string
		v    int
	}{
		{"MaxApps", o.MaxApps}, {"MaxNodes", o.MaxNodes}, {"MaxSharedKeys", o.MaxSharedKeys},
		{"MaxKVKeys", o.MaxKVKeys}, {"MaxKVBytes", o.MaxKVBytes}, {"MaxLeases", o.MaxLeases},
	}
	for _, n := range ints {
		if n.v < 0 {
			return fmt.Errorf("%w: %s %d, want 0 (default) or more", ErrBadOptions, n.name, n.v)
		}
	}
	if o.Store != nil && o.DataDir != "" {
		return fmt.Errorf("%w: DataDir is for a server without a Store (the store keeps the data)", ErrBadOptions)
	}
	if err := o.Transport.Validate(); err != nil {
		return fmt.Errorf("%w: Transport: %w", ErrBadOptions, err)
	}
	return nil
}
