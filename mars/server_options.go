package mars

import (
	"fmt"
	"time"
)

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
