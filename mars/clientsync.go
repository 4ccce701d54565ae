package mars

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// The client's loop. It owns the fields marked "owned by the loop" in
// Client, and is the only goroutine that sends reports and applies syncs.
//
// Sync protocol, node side:
//   - Every Interval, and Debounce after a local change, the node sends a
//     report: its identity, the version of its view, and every change
//     (node info, shared-data operations) it has not sent yet, numbered
//     (From, Seq]. MARS answers with a sync: what changed since the view's
//     version (or everything), and the highest change number it has applied
//     with nothing missing before it (Ack). Unacknowledged changes are sent
//     again when MARS restarts, when MARS says it missed some, when the
//     transport reports MARS down, or when MARS has been silent for two
//     intervals; MARS skips what it has already applied.
//   - A heartbeat (nothing changed on either side) is about 50 bytes each way.
//   - When MARS does not know the node (first contact, removed after a long
//     silence, MARS restarted), its sync says so and the node registers:
//     its full info and pending changes, and after a MARS restart also the
//     shared data of its view (the seed), at a random moment within
//     ReregisterJitter so a whole cluster does not register at once.
//   - After a MARS restart the view keeps the entries the new MARS does not
//     list yet for a grace period (3 intervals + ReregisterJitter), while the
//     other nodes re-register; whatever the new MARS has not confirmed by
//     then is dropped. Lookups never see the cluster vanish and come back.
//   - After MARS was silent for InTouchSpan, or when a sync comes from
//     another MARS address than the last one, a report some two intervals
//     later asks for the changes since the version the view held before
//     (see lookBack): a view that went past a change it never got (from a
//     replica that served a version its copy did not hold yet) gets it.
//     Disturbances that keep coming postpone it by at most 3 intervals;
//     the later ones get a look-back of their own after it.

// recentSpan is how long MARS must keep answering after acknowledging a
// change before every node's view surely holds it: each node pulls every
// Interval, so two intervals and some slack.
func (c *Client) recentSpan() time.Duration {
	return 2*c.cfg.Interval + c.cfg.Interval/2
}

func (c *Client) graceSpan() time.Duration {
	return 3*c.cfg.Interval + c.cfg.ReregisterJitter
}

func (c *Client) run() {
	defer c.wg.Done()
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	soon := time.NewTimer(0) // the first report goes out at once
	defer soon.Stop()
	c.soonArmed = true
	soonAt := time.Now()
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	defer grace.Stop()
	retry := time.NewTimer(time.Hour) // checks that the last report was answered
	retry.Stop()
	defer retry.Stop()
	var reportedAt int64
	armSoon := func(d time.Duration) {
		at := time.Now().Add(d)
		if !c.soonArmed || at.Before(soonAt) {
			soon.Reset(d)
			c.soonArmed, soonAt = true, at
		}
	}
	for {
		var after action
		select {
		case <-c.done:
			return
		case <-tick.C:
			c.view.tick(time.Now())
			c.noteSilence()
			c.maybeFailover()
			after = c.report()
		case <-soon.C:
			c.soonArmed = false
			if c.awaiting(reportedAt) {
				break // the reply to the last changes sends these (handleSync)
			}
			after = c.report()
		case <-c.kick:
			armSoon(c.cfg.Debounce)
		case <-c.peerDown:
			c.mu.Lock()
			c.sentSeq = c.acked
			c.mu.Unlock()
			armSoon(c.cfg.Debounce)
		case m := <-c.inbox:
			after = c.handle(m)
		case <-grace.C:
			c.graceOn = false
			c.fireChanges(c.view.endGrace())
		case <-retry.C:
			if c.lastReply.Load() >= reportedAt {
				break // answered
			}
			if c.maybeFailover() {
				after = c.report() // to the next MARS, now rather than at the next tick
				break
			}
			if c.sessionLost() {
				// The report died with its session (MARS restarted and reset
				// it): send again now rather than at the next tick.
				c.mu.Lock()
				c.sentSeq = c.acked
				c.mu.Unlock()
				after = c.report()
			} else {
				retry.Reset(c.cfg.Interval / 4) // still in flight: look again
			}
		}
		if after.sent {
			reportedAt = c.clock()
			retry.Reset(c.cfg.Interval / 4)
		}
		if after.soon >= 0 && after.set {
			armSoon(after.soon)
		}
		if after.grace {
			grace.Reset(c.graceSpan())
		}
	}
}

// noteSilence logs once when MARS has not answered for InTouchSpan (the
// node keeps its view and keeps working); handleSync logs once when it
// answers again.
func (c *Client) noteSilence() {
	if c.lost {
		return
	}
	last := c.lastReply.Load()
	silent := time.Duration(c.clock() - last)
	if silent <= c.cfg.InTouchSpan {
		return
	}
	c.lost = true
	c.logLost(silent, last == 0)
}

// awaiting reports whether a report with changes is out and unanswered
// (for less than an Interval): one such report at a time, so changes made
// meanwhile go together once MARS answers. A MARS that writes each report
// to a shared store then gets as many writes as it can take, not one per
// Debounce.
func (c *Client) awaiting(reportedAt int64) bool {
	c.mu.Lock()
	out := c.sentSeq > c.acked
	c.mu.Unlock()
	return out && c.lastReply.Load() < reportedAt && time.Duration(c.clock()-reportedAt) < c.cfg.Interval
}

// action is what a step asks the loop to schedule.
type action struct {
	set   bool
	soon  time.Duration // report again after this long
	grace bool          // (re)start the grace period
	sent  bool          // a report went out
}

// sessionLost reports whether the transport has no session with MARS any
// more, so what was queued on it is gone (a session still dialing keeps its
// queue). A transport that cannot tell (it has no Peer method) never
// counts as lost: its reports wait for the next tick.
func (c *Client) sessionLost() bool {
	to := c.mars.Load()
	if to == nil {
		return false
	}
	p, ok := c.tr.(interface {
		Peer(netip.AddrPort) (rudp.PeerStatus, bool)
	})
	if !ok {
		return false
	}
	_, up := p.Peer(*to)
	return !up
}

func soonAction(d time.Duration) action { return action{set: true, soon: d} }

// report sends what the node has to say. It returns a follow-up action.
func (c *Client) report() action {
	now := time.Now()
	if !c.regAt.IsZero() {
		if now.Before(c.regAt) {
			return soonAction(c.regAt.Sub(now)) // registration is jittered
		}
		c.regAt = time.Time{}
	}
	to, ok := c.resolve(now)
	if !ok {
		return action{}
	}
	var forgotten []keyChange
	var leaveMsg []byte
	c.mu.Lock()
	if c.oldApp != nil { // SetApp: leave the old app, start over in the new one
		l := leave{App: *c.oldApp, Addr: c.addr, Inc: c.inc}
		leaveMsg = l.append(nil)
		c.oldApp = nil
		clear(c.ops)
		clear(c.recent)
		c.acked, c.sentSeq, c.needFull, c.reseed, c.registered = 0, 0, true, false, false
		c.part = nil
		forgotten = c.view.forget()
	}
	if last := c.lastReply.Load(); last != 0 && time.Duration(c.clock()-last) > 2*c.cfg.Interval {
		c.sentSeq = min(c.sentSeq, c.acked) // MARS may have missed what we sent
	}
	marsInc, ver, _ := c.view.state()
	r := report{App: c.app, Addr: c.addr, Inc: c.inc, MarsInc: marsInc, Ver: c.lookBackVer(marsInc, ver), Seq: c.seq}
	if marsInc != 0 && c.marsInc != 0 && marsInc != c.marsInc {
		// A new MARS: say what the view holds, so it sends only what
		// differs (digest.go).
		r.Digest = c.view.digest()
	}
	if c.cfg.Guest {
		r.Flags |= flagGuest
	} else {
		r.Life = c.life
	}
	var ops []op
	var seed []kv
	if c.needFull {
		c.needFull = false
		if !c.cfg.Guest {
			info := c.info
			r.Info = &info
		}
		for _, o := range c.ops {
			ops = append(ops, o)
		}
		if c.reseed { // until a registration is answered: one may be lost with MARS's old session
			seed, r.SeedAt = c.view.sharedSnapshot(), c.seedAt
		}
	} else {
		r.From = c.sentSeq
		if c.infoSeq > c.sentSeq && !c.cfg.Guest {
			info := c.info
			r.Info = &info
		}
		for _, o := range c.ops {
			if o.Seq > c.sentSeq {
				ops = append(ops, o)
			}
		}
	}
	c.sentSeq = c.seq
	c.sentMax = max(c.sentMax, c.seq)
	c.mu.Unlock()

	if leaveMsg != nil {
		c.send(to, KindLeave, leaveMsg)
	}
	c.fireChanges(forgotten)
	slices.SortFunc(ops, func(a, b op) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	c.sendReport(to, r, ops, seed)
	return action{sent: true}
}

// sendReport sends r with its changes, split over several reports when
// there are more than one report may carry; each part covers a contiguous
// range of change numbers.
func (c *Client) sendReport(to netip.AddrPort, r report, ops []op, seed []kv) {
	parts := max(1, (len(ops)+maxOpsPerReport-1)/maxOpsPerReport, (len(seed)+maxSeedPerReport-1)/maxSeedPerReport)
	from, last := r.From, r.Seq
	for i := 0; i < parts; i++ {
		p := r
		p.From = from
		p.Ops = ops[min(i*maxOpsPerReport, len(ops)):min((i+1)*maxOpsPerReport, len(ops))]
		p.Seed = seed[min(i*maxSeedPerReport, len(seed)):min((i+1)*maxSeedPerReport, len(seed))]
		if i > 0 {
			p.Info = nil
		}
		if len(p.Seed) == 0 {
			p.SeedAt = 0
		}
		if i < parts-1 {
			p.Seq = from
			if len(p.Ops) > 0 {
				p.Seq = p.Ops[len(p.Ops)-1].Seq
			}
		} else {
			p.Seq = last
		}
		from = p.Seq
		c.buf = p.append(c.buf[:0])
		c.send(to, KindReport, c.buf)
	}
	if cap(c.buf) > 64<<10 {
		c.buf = nil
	}
}

func (c *Client) send(to netip.AddrPort, kind byte, p []byte) {
	if err := c.tr.Send(to, kind, p); err != nil && !errors.Is(err, rudp.ErrClosed) {
		c.warn.Warn("mars: cannot send to MARS", "mars", to, "err", err)
	}
}

func (c *Client) handle(m clientMsg) action {
	switch m.kind {
	case KindSync:
		if c.look.src != m.from {
			if c.look.src.IsValid() {
				c.lookBackLater() // another replica's copy
			}
			c.look.src = m.from
		}
		c.adopt(m.from)
		c.kvNoteSync(m.from, m.p)
		return c.handleSync(m.p)
	case KindError:
		if !c.kvNoteError(m.from, m.p) {
			c.handleError(m.p)
		}
	}
	return action{}
}

func (c *Client) handleError(p []byte) {
	e, err := decodeError(p)
	if err != nil {
		c.warn.Warn("mars: malformed error message from MARS", "err", err)
		return
	}
	if e.Addr != "" && e.Addr != c.addr {
		return
	}
	c.mu.Lock()
	c.lastErr = &RemoteError{Code: int(e.Code), Message: e.Message}
	c.mu.Unlock()
	c.warn.Warn("mars: MARS refused a message: "+causeOf(int(e.Code)), "node", c.addr, "reason", e.Message)
}

func (c *Client) handleSync(p []byte) action {
	h, r, fields, err := decodeSyncHead(p)
	if err != nil {
		c.warn.Warn("mars: malformed sync from MARS", "err", err)
		return action{}
	}
	if h.Addr != c.addr {
		return action{}
	}
	if h.Part == 0 {
		c.part = &partialSync{head: h}
	} else if ps := c.part; ps == nil || h.Part != ps.next || h.MarsInc != ps.head.MarsInc ||
		h.To != ps.head.To || h.Echo != ps.head.Echo {
		c.part = nil
		c.warn.Warn("mars: sync part out of sequence, waiting for the next sync")
		return action{}
	}
	if err := decodeSyncBody(&r, fields, &c.part.body); err != nil {
		c.part = nil
		c.warn.Warn("mars: malformed sync from MARS", "err", err)
		return action{}
	}
	if h.Flags&syncMore != 0 {
		c.part.next++
		return action{}
	}
	ps := c.part
	c.part = nil
	h.From = ps.head.From

	prev := c.lastReply.Swap(c.clock())
	if c.lost {
		c.lost = false
		c.logBack(time.Duration(c.clock() - prev))
		c.lookBackLater() // whatever happened meanwhile
	}
	now := time.Now()
	act := c.absorb(&h, now)
	if h.Flags&syncWait != 0 && (!act.set || act.soon > c.cfg.Interval/2) {
		// MARS still takes registrations: give it our digest again soon.
		act.set, act.soon = true, c.cfg.Interval/2+jitter(c.cfg.Interval/4)
	}
	c.mu.Lock()
	more := c.seq > c.sentSeq
	c.mu.Unlock()
	if more && (!act.set || act.soon > c.cfg.Debounce) {
		act.set, act.soon = true, c.cfg.Debounce // changes made while the last report was out
	}
	c.fireSync(false)
	changes, ok := c.view.apply(&h, &ps.body, c.graceOn, now)
	if ok {
		c.lookedBack(&h)
	}
	c.fireChanges(changes)
	if ok && !c.initial {
		c.join(&act)
	}
	c.fireSync(true)
	if ok {
		c.syncDone()
	}
	return act
}

// join moves the node through joining after a sync: once its view lists it,
// it declares itself online (reported at once); once its view lists it
// online, it is ready. A guest is ready after its first sync.
func (c *Client) join(act *action) {
	if !c.cfg.Guest {
		st := c.view.selfState()
		c.mu.Lock()
		life := c.life
		if st != StateNone && life == StateJoining {
			c.life = StateOnline
		}
		c.mu.Unlock()
		switch {
		case st == StateNone && c.registered:
			// A registration's reply may carry a snapshot built a moment
			// before it (MARS reuses one for a burst of registrations):
			// ask again now, the delta lists the node.
			act.set, act.soon = true, c.cfg.Debounce
			return
		case st == StateNone || life == StateDraining:
			return
		case life == StateJoining:
			act.set, act.soon = true, 0 // report "online" now
			return
		case st != StateOnline:
			return
		}
	}
	c.initial = true
	c.cb.mu.Lock()
	close(c.ready)
	c.cb.mu.Unlock()
	c.fireInitial()
}

// absorb takes the bookkeeping of a sync: MARS's incarnation, the
// acknowledgement, and whether MARS needs the node's full state.
func (c *Client) absorb(h *syncHead, now time.Time) action {
	var act action
	c.mu.Lock()
	defer c.mu.Unlock()
	nowClock := c.clock()
	if h.MarsInc == c.marsInc && h.Flags&syncNeedInfo == 0 {
		c.reseed = false // this MARS has registered the node (and taken its seed)
	}
	if h.MarsInc != c.marsInc {
		prev := c.marsInc
		c.marsInc = h.MarsInc
		c.acked = h.Ack
		c.sentSeq = c.acked // whatever this MARS has not acknowledged goes again
		if prev != 0 {
			// A new MARS: it lost everything but what it persisted. Keep the
			// view for a grace period and seed it with our shared data; our
			// recent acknowledged changes go again as changes, so they win
			// over seeds from views that had not caught up with them.
			_, _, syncedAt := c.view.state()
			c.reseed, c.seedAt = true, syncedAt.UnixMilli()
			c.graceOn, act.grace = true, true
			for k, r := range c.recent {
				if _, pending := c.ops[k]; pending {
					continue
				}
				o := r.op
				if o.Add {
					// The new MARS may or may not hold the add (a persisted
					// one does): send the value our view shows after it.
					v, ok := c.view.SharedData(o.Key)
					if !ok {
						continue
					}
					o = op{Seq: o.Seq, Key: o.Key, Val: v}
				}
				c.ops[k] = o
			}
			clear(c.recent)
		}
	} else if h.Ack > c.acked {
		c.acked = h.Ack
	}
	for k, o := range c.ops {
		if o.Seq <= c.acked {
			delete(c.ops, k)
			c.recent[k] = recentOp{op: o, ackAt: nowClock}
		}
	}
	for k, r := range c.recent {
		if time.Duration(nowClock-r.ackAt) > c.recentSpan() {
			delete(c.recent, k)
		}
	}
	if h.Ack < h.Echo && c.acked < h.Echo && h.Echo <= c.sentSeq {
		// MARS missed changes before this report: send them again.
		c.sentSeq = c.acked
		act.set, act.soon = true, c.cfg.Debounce
	}
	if h.Flags&syncNeedInfo == 0 {
		c.registered = true
		return act
	}
	if !c.needFull && c.regAt.IsZero() {
		c.needFull = true
		var d time.Duration
		if c.registered || c.reseed {
			d = jitter(c.cfg.ReregisterJitter)
		}
		c.regAt = now.Add(d)
		act.set, act.soon = true, d
	}
	return act
}

// lookBack is a view's defence against a MARS that served it a version
// without every change up to it (a replica whose copy of a shared store was
// still catching up, say): no later delta would carry such a change, since
// deltas start at the view's version. After a disturbance that may hide one
// (MARS silent for InTouchSpan, or a sync from another replica), the next
// report once lookBackSettle has passed asks for the changes since the
// version the view held before, and the view applies them again: a delta
// holds the latest state of what changed, so only what the view missed
// changes. The cost is one delta (or a full snapshot, if MARS finds that
// cheaper) per disturbance. A periodic look-back would also cover nodes
// that see no disturbance, but MARS sends a full snapshot for a delta whose
// change log is long (a hot shared key makes it so within seconds), and
// that per node and period was too dear.
type lookBack struct {
	src     netip.AddrPort // where the last sync came from
	marsInc uint64         // the MARS incarnation from is a version of
	from    uint64         // the view's version before the disturbance; 0: none pending
	at      int64          // client clock from which the look-back may be asked
	due     int64          // the latest time later disturbances may move at to
	asked   bool           // a report asked for it
	// A disturbance that would postpone the pending look-back past due
	// gets its own, asked after the pending one: disturbances that keep
	// coming (a flapping link) never starve the look-back.
	next   uint64 // its from; 0: none
	nextAt int64  // its at
}

// lookBackSettle is how long after a disturbance the look-back waits (the
// replicas' copies settle meanwhile), plus up to an Interval of jitter.
func (c *Client) lookBackSettle() time.Duration { return 2*c.cfg.Interval + jitter(c.cfg.Interval) }

// lookBackLater schedules a look-back from the view's current version
// (from an earlier one if one is pending).
func (c *Client) lookBackLater() {
	marsInc, ver, _ := c.view.state()
	lb := &c.look
	if ver == 0 {
		return // the first sync is a full snapshot anyway
	}
	at := c.clock() + int64(c.lookBackSettle())
	switch {
	case lb.from == 0 || lb.marsInc != marsInc:
		*lb = lookBack{src: lb.src, marsInc: marsInc}
		lb.start(ver, at, c.cfg.Interval)
	case at <= lb.due:
		lb.from, lb.at, lb.asked = min(lb.from, ver), at, false
	default:
		if lb.next == 0 || ver < lb.next {
			lb.next = ver
		}
		lb.nextAt = at
	}
}

// start makes a look-back from version from pending, to be asked from at;
// later disturbances may postpone it by 3 intervals at most.
func (lb *lookBack) start(from uint64, at int64, interval time.Duration) {
	lb.from, lb.at, lb.due, lb.asked = from, at, at+int64(3*interval), false
}

// done ends the pending look-back and starts the one queued behind
// it, if any.
func (lb *lookBack) done(interval time.Duration) {
	lb.from, lb.asked = 0, false
	if lb.next != 0 {
		lb.start(lb.next, lb.nextAt, interval)
		lb.next = 0
	}
}

// lookBackVer returns the version a report asks changes from: the view's
// (ver), or the one a pending look-back goes back to.
func (c *Client) lookBackVer(marsInc, ver uint64) uint64 {
	lb := &c.look
	if lb.from == 0 || c.clock() < lb.at {
		return ver
	}
	if lb.marsInc != marsInc {
		*lb = lookBack{src: lb.src} // versions of another MARS
		return ver
	}
	if lb.from >= ver {
		lb.done(c.cfg.Interval) // nothing to look back on
		return c.lookBackVer(marsInc, ver)
	}
	lb.asked = true
	return lb.from
}

// lookedBack ends a pending look-back once a sync applied covers it: a full
// snapshot, or the changes since its version or before.
func (c *Client) lookedBack(h *syncHead) {
	lb := &c.look
	if lb.from != 0 && lb.asked && (h.Flags&syncFull != 0 || h.From <= lb.from) {
		lb.done(c.cfg.Interval)
	}
}
