package mars

import (
	"log/slog"
	"sync"
	"time"
)

// rateLog logs each distinct cause at most once per period, then says how
// many it held back, so a node sending garbage in a loop cannot flood the log.
type rateLog struct {
	log    *slog.Logger
	period time.Duration
	mu     sync.Mutex
	last   map[string]time.Time
	quiet  map[string]int
}

func newRateLog(l *slog.Logger, period time.Duration) *rateLog {
	return &rateLog{log: l, period: period, last: map[string]time.Time{}, quiet: map[string]int{}}
}

func (r *rateLog) warn(cause string, args ...any) {
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
