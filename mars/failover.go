package mars

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Several MARS addresses. ClientConfig.MarsAddr may list several
// "host:port" entries separated by commas, and a host name may resolve to
// several addresses: together, in order, they are the client's
// candidates. The client talks to one at a time (the first at start); when
// it has heard nothing from it for FailoverAfter plus a random jitter of
// up to half an Interval (as its loop saw it: see maybeFailover), it moves
// to the next (wrapping around). To the
// client a replica with another incarnation is a MARS restart: it
// re-registers, with its pending and recent changes and a seed, and its
// view carries over through the grace period; a replica over the same store
// has the same incarnation, and the client simply continues there. A sync
// that arrives from another candidate than the current one (a slow answer
// from the replica the client just left) makes that candidate current
// again: it is alive.

// splitMarsAddrs splits and checks a MarsAddr value.
func splitMarsAddrs(v string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("mars: ClientConfig.MarsAddr %q: entry %q: want host:port: %w", v, a, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// resolveAll resolves every entry to its addresses, in order, without
// duplicates. It fails only if no entry resolves.
func resolveAll(entries []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var firstErr error
	for _, e := range entries {
		host, port, _ := net.SplitHostPort(e)
		ips, err := lookupIPs(host)
		if err == nil && len(ips) == 0 {
			err = fmt.Errorf("%s: no addresses", host)
		}
		pn, perr := net.LookupPort("udp", port)
		if err == nil {
			err = perr
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, ip := range ips {
			ap := netip.AddrPortFrom(ip.Unmap(), uint16(pn))
			if !slices.Contains(out, ap) {
				out = append(out, ap)
			}
		}
	}
	if len(out) == 0 {
		return nil, firstErr
	}
	return out, nil
}

func lookupIPs(host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(ips, func(a, b netip.Addr) int { // IPv4 first, as ResolveUDPAddr picks
		switch {
		case a.Unmap().Is4() && !b.Unmap().Is4():
			return -1
		case !a.Unmap().Is4() && b.Unmap().Is4():
			return 1
		}
		return 0
	})
	return ips, nil
}

// resolve returns the current MARS address, resolving the entries of
// MarsAddr again when the cached answer is older than MarsAddrTTL. The
// current candidate stays current if it is still listed. On a resolver
// error it keeps the last good answer.
func (c *Client) resolve(now time.Time) (netip.AddrPort, bool) {
	if len(c.cands) > 0 && c.cfg.MarsAddrTTL > 0 && now.Sub(c.resolvedAt) < c.cfg.MarsAddrTTL {
		return c.cands[c.cur], true
	}
	cands, err := resolveAll(c.marsAddrs)
	if err != nil {
		c.warn.Warn("mars: cannot resolve the MARS address", "addr", c.cfg.MarsAddr, "err", err)
		if len(c.cands) > 0 {
			return c.cands[c.cur], true
		}
		return netip.AddrPort{}, false
	}
	cur := 0
	if len(c.cands) > 0 {
		if i := slices.Index(cands, c.cands[c.cur]); i >= 0 {
			cur = i
		}
	}
	c.cands, c.cur, c.resolvedAt = cands, cur, now
	c.candList.Store(&cands)
	if m := c.mars.Load(); m == nil || *m != cands[cur] {
		ap := cands[cur]
		c.mars.Store(&ap)
	}
	return cands[cur], true
}

// maybeFailover moves to the next candidate when the current one has been
// silent for FailoverAfter plus this switch's jitter; it reports whether it
// moved. The loop checks at every tick and, while a report is unanswered,
// every Interval/4. Silence counts from the loop's point of view: a check
// that comes more than 1.5 Interval after the previous one means the loop
// stood still (the process was stopped or short of CPU), and answers that
// arrived meanwhile may not have reached it yet, so that time beyond an
// Interval does not count.
func (c *Client) maybeFailover() bool {
	if len(c.cands) < 2 {
		c.maybeResolveAgain(time.Duration(c.clock() - max(c.lastReply.Load(), c.switchedAt)))
		return false
	}
	now := c.clock()
	base := max(c.lastReply.Load(), c.switchedAt)
	if base != c.pauseBase {
		c.pauseBase, c.paused = base, 0
	}
	if gap := time.Duration(now - c.judgedAt); c.judgedAt != 0 && gap > c.cfg.Interval+c.cfg.Interval/2 {
		c.paused += int64(gap - c.cfg.Interval)
	}
	c.judgedAt = now
	silent := time.Duration(now - base - c.paused)
	if silent < c.cfg.FailoverAfter+c.failJitter {
		return false
	}
	from := c.cands[c.cur]
	c.cur = (c.cur + 1) % len(c.cands)
	to := c.cands[c.cur]
	c.mars.Store(&to)
	c.switchedAt, c.failJitter = now, jitter(c.cfg.Interval/2)
	c.part = nil
	c.mu.Lock()
	c.sentSeq = c.acked // what the old one did not acknowledge goes to the new one
	c.mu.Unlock()
	c.noteMove(from, to, silent)
	c.log.Warn("mars: no answer from this MARS; moving to the next address", "from", from, "to", to,
		"node", c.addr, "silent", silent.Round(time.Millisecond), "next", fmt.Sprintf("%d of %d", c.cur+1, len(c.cands)))
	c.maybeResolveAgain(silent)
	return true
}

// maybeResolveAgain makes the next report resolve MarsAddr again, whatever
// MarsAddrTTL says, when MARS has been silent for FailoverAfter and the
// addresses were resolved longer ago than that: a MARS that moved (a
// rescheduled pod) has a new address under the same name.
func (c *Client) maybeResolveAgain(silent time.Duration) {
	if silent >= c.cfg.FailoverAfter && !c.resolvedAt.IsZero() && time.Since(c.resolvedAt) >= c.cfg.FailoverAfter {
		c.resolvedAt = time.Time{}
	}
}

// isCandidate reports whether addr is one of the resolved MARS addresses
// (any goroutine).
func (c *Client) isCandidate(addr netip.AddrPort) bool {
	l := c.candList.Load()
	return l != nil && slices.Contains(*l, addr)
}

// adopt makes from the current MARS when a sync arrives from another
// candidate (loop goroutine), and notes every answer (replicas.go).
func (c *Client) adopt(from netip.AddrPort) {
	defer c.noteAnswer(from)
	if m := c.mars.Load(); m != nil && *m == from {
		return
	}
	i := slices.Index(c.cands, from)
	if i < 0 {
		return
	}
	prev := c.cands[c.cur]
	c.cur = i
	c.mars.Store(&from)
	c.switchedAt, c.failJitter = c.clock(), jitter(c.cfg.Interval/2)
	c.part = nil
	c.log.Info("mars: an answer from another MARS address; using it", "from", prev, "to", from, "node", c.addr)
}
