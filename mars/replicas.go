package mars

import (
	"net/netip"
	"sync"
	"time"
)

// What a client knows of each MARS address (replica) it may use, for
// status pages and the failover log lines (failover.go).

// Replica states, as a client sees them.
const (
	ReplicaInUse   = "in use"  // the one the client talks to, answering
	ReplicaSilent  = "silent"  // the one the client talks to, silent past InTouchSpan
	ReplicaFailed  = "failed"  // the client left it after FailoverAfter of silence and has not heard it since
	ReplicaStandby = "standby" // not in use: never tried, or it answered since the client last left it
)

// ReplicaStatus is one MARS address of the client's candidates.
type ReplicaStatus struct {
	Addr  string `json:"addr"`
	State string `json:"state"` // ReplicaInUse, ReplicaSilent, ReplicaFailed or ReplicaStandby
	// LastAnswerMs is how long ago it last answered this client (ms); -1
	// if it never has.
	LastAnswerMs int64 `json:"lastAnswerMs"`
	// FailedMs is how long ago the client left it for its silence (ms),
	// with State ReplicaFailed; else 0.
	FailedMs int64 `json:"failedMs,omitempty"`
}

// replicaBook is the client's record of its MARS addresses. The loop
// writes it; status readers read it under mu.
type replicaBook struct {
	mu       sync.Mutex
	heard    map[netip.AddrPort]int64 // client clock of the last sync from each
	failedAt map[netip.AddrPort]int64 // client clock of the move away from a silent one
	move     *replicaMove             // the last move, until the new one answers
	quiet    bool                     // the answer after a move was logged: no "MARS back" for it
}

type replicaMove struct {
	from, to netip.AddrPort
	at       int64
	silent   time.Duration
}

func (b *replicaBook) init() {
	if b.heard == nil {
		b.heard = map[netip.AddrPort]int64{}
		b.failedAt = map[netip.AddrPort]int64{}
	}
}

// Replicas lists the client's MARS addresses in order, with the state of
// each as this client sees it (any goroutine). Before the first resolve it
// is empty.
func (c *Client) Replicas() []ReplicaStatus {
	l := c.candList.Load()
	if l == nil {
		return nil
	}
	cur := c.mars.Load()
	now := c.clock()
	b := &c.replicas
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ReplicaStatus, 0, len(*l))
	for _, a := range *l {
		r := ReplicaStatus{Addr: a.String(), State: ReplicaStandby, LastAnswerMs: -1}
		heard, ok := b.heard[a]
		if ok {
			r.LastAnswerMs = (now - heard) / int64(time.Millisecond)
		}
		switch failed, wasLeft := b.failedAt[a]; {
		case cur != nil && *cur == a:
			r.State = ReplicaInUse
			if !ok || time.Duration(now-heard) > c.cfg.InTouchSpan {
				r.State = ReplicaSilent
			}
		case wasLeft && (!ok || heard < failed):
			r.State, r.FailedMs = ReplicaFailed, (now-failed)/int64(time.Millisecond)
		}
		out = append(out, r)
	}
	return out
}

// MarsInUse is the MARS address the client talks to, or "" before the
// first resolve (any goroutine).
func (c *Client) MarsInUse() string {
	if m := c.mars.Load(); m != nil {
		return m.String()
	}
	return ""
}

// noteMove records a move away from a silent MARS (loop goroutine).
func (c *Client) noteMove(from, to netip.AddrPort, silent time.Duration) {
	b := &c.replicas
	b.mu.Lock()
	b.init()
	now := c.clock()
	b.failedAt[from] = now
	b.move = &replicaMove{from: from, to: to, at: now, silent: silent}
	b.mu.Unlock()
}

// noteAnswer records a sync from a MARS address and, for the first answer
// of the address a move went to, logs that the move is done (loop
// goroutine).
func (c *Client) noteAnswer(from netip.AddrPort) {
	b := &c.replicas
	b.mu.Lock()
	b.init()
	now := c.clock()
	b.heard[from] = now
	mv := b.move
	switch {
	case mv != nil && mv.to == from:
		b.move, b.quiet = nil, true
	case mv != nil && mv.from == from: // a late answer of the one left: adopt went back to it
		b.move, mv = nil, nil
	}
	b.mu.Unlock()
	if mv != nil && mv.to == from {
		c.log.Info("mars: the next MARS answers; the node is served there now", "mars", from, "left", mv.from,
			"node", c.addr, "silentBeforeMove", mv.silent.Round(time.Millisecond),
			"answeredAfter", time.Duration(now-mv.at).Round(time.Millisecond))
	}
}

// logLost logs the start of a silence of MARS (loop goroutine).
func (c *Client) logLost(silent time.Duration, never bool) {
	c.replicas.mu.Lock()
	c.replicas.quiet = false
	c.replicas.mu.Unlock()
	args := []any{"mars", c.MarsInUse(), "node", c.addr}
	if n := len(c.cands); n > 1 {
		args = append(args, "replicas", n, "failoverAfter", c.cfg.FailoverAfter)
	}
	if never {
		c.log.Warn("mars: no answer from MARS yet; the node keeps trying", append(args, "waited", silent.Round(time.Millisecond))...)
		return
	}
	c.log.Warn("mars: lost MARS; the node keeps its last view and keeps working", append(args, "silent", silent.Round(time.Millisecond))...)
}

// logBack logs the end of a silence of MARS, unless the answer came from
// the MARS a move went to, which noteAnswer logged (loop goroutine).
func (c *Client) logBack(silent time.Duration) {
	c.replicas.mu.Lock()
	quiet := c.replicas.quiet
	c.replicas.quiet = false
	c.replicas.mu.Unlock()
	if quiet {
		return
	}
	c.log.Info("mars: MARS back", "mars", c.MarsInUse(), "node", c.addr, "silent", silent.Round(time.Millisecond))
}
