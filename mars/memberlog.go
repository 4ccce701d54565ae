package mars

import (
	"log/slog"
	"time"
)

// MARS logs every membership change of the nodes it lists, at info: a node
// joined (with its type, role and incarnation), drains, went offline (and
// how long it had been silent), came back, left, was removed, or was
// replaced by a new incarnation. After a burst of memberLogBurst lines in
// one second (a whole cluster registering after a MARS restart), the rest
// of that second is counted and summarised in one line per kind.
const memberLogBurst = 50

type memberLog struct {
	log         *slog.Logger
	windowStart time.Time
	lines       int
	suppressed  map[string]int // message -> count, this window
}

func newMemberLog(log *slog.Logger) *memberLog {
	return &memberLog{log: log, suppressed: make(map[string]int)}
}

// note logs one change (under the server's mutex).
func (m *memberLog) note(msg string, args ...any) {
	now := time.Now()
	if now.Sub(m.windowStart) >= time.Second {
		m.flush(now)
	}
	if m.lines < memberLogBurst {
		m.lines++
		m.log.Info(msg, args...)
		return
	}
	m.suppressed[msg]++
}

// flush writes the summaries of the last window and starts a new one.
func (m *memberLog) flush(now time.Time) {
	for msg, n := range m.suppressed {
		m.log.Info(msg+" (more, not logged one by one)", "count", n, "within", now.Sub(m.windowStart).Round(time.Millisecond))
		delete(m.suppressed, msg)
	}
	m.windowStart, m.lines = now, 0
}

// tick flushes a window that has ended (from the sweep).
func (m *memberLog) tick() {
	if len(m.suppressed) > 0 && time.Since(m.windowStart) >= time.Second {
		m.flush(time.Now())
	}
}

// stateChanged logs a node's move from old to its current state (under
// the server's mutex). oldInc is the incarnation listed before.
func (s *Server) stateChanged(a *appState, e *nodeEntry, oldInc uint64, old State, gone byte) {
	now := s.now()
	base := []any{"app", a.name, "node", e.addr}
	if oldInc != 0 && oldInc != e.inc && old != StateNone {
		s.mlog.note("mars: node replaced by a new incarnation", append(base, "old_incarnation", oldInc,
			"incarnation", e.inc)...)
		old = StateNone
	}
	switch new := e.listed; {
	case old == StateNone && new != StateGone:
		s.mlog.note("mars: node joined", append(base, "type", e.info.Type, "role", e.info.Role,
			"incarnation", e.inc, "state", new.String())...)
	case new == StateDraining:
		s.mlog.note("mars: node draining", base...)
	case new == StateOffline:
		s.mlog.note("mars: node offline", append(base, "silent", time.Duration(now-e.lastSeen).Round(time.Millisecond))...)
	case new == StateOnline && old == StateOffline:
		s.mlog.note("mars: node back online", base...)
	case new == StateGone && gone == goneLeft:
		s.mlog.note("mars: node left", base...)
	case new == StateGone:
		s.mlog.note("mars: node removed", append(base, "silent", time.Duration(now-e.lastSeen).Round(time.Millisecond))...)
	case new == StateOnline:
		s.log.Debug("mars: node online", base...)
	}
}
