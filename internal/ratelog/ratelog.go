// Package ratelog logs each distinct cause at most once per period, with a
// count of what it suppressed in between, so a flood of bad input cannot
// flood the log.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// Logger is safe for concurrent use.
type Logger struct {
	log    *slog.Logger
	period time.Duration
	mu     sync.Mutex
	last   map[string]time.Time
	quiet  map[string]int
}

// New returns a Logger writing to l at most once per period per cause.
func New(l *slog.Logger, period time.Duration) *Logger {
	return &Logger{log: l, period: period, last: map[string]time.Time{}, quiet: map[string]int{}}
}

// Warn logs cause (the message) with args, unless the same cause was
// logged less than a period ago.
func (r *Logger) Warn(cause string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if t, ok := r.last[cause]; ok && now.Sub(t) < r.period {
		r.quiet[cause]++
		r.mu.Unlock()
		return
	}
	if len(r.last) > 1024 {
		clear(r.last)
		clear(r.quiet)
	}
	n := r.quiet[cause]
	r.last[cause] = now
	r.quiet[cause] = 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.log.Warn(cause, args...)
}
