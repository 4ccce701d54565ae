package mars

// Handling of node reports and leaves: registration, shared data, the sync
// reply, and the rule that a node speaks only for its own address.

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
)

func (s *Server) handleReport(m inMsg) {
	s.stats.reports.Add(1)
	s.noteReport(m.p)
	r, err := decodeReport(m.p)
	if err != nil {
		s.refuse(m.from, "", 0, CodeBadMessage, err.Error())
		return
	}
	if err := CheckApp(r.App); err != nil {
		s.refuse(m.from, r.Addr, r.Seq, CodeBadApp, err.Error())
		return
	}
	if r.App == "" && s.opts.RequireApp {
		s.refuse(m.from, r.Addr, r.Seq, CodeBadApp, "this MARS requires an app name")
		return
	}
	if err := checkAddr("mesh address", r.Addr, true); err != nil {
		s.refuse(m.from, r.Addr, r.Seq, CodeBadNode, err.Error())
		return
	}
	if r.Info != nil {
		if err := r.Info.check(); err != nil {
			s.refuse(m.from, r.Addr, r.Seq, CodeBadNode, err.Error())
			return
		}
		r.Info.Values = bytes.Clone(r.Info.Values) // do not pin the message buffer
	}
	if err := s.checkSender(m.from, r.Addr); err != nil {
		s.refuse(m.from, r.Addr, r.Seq, CodeBadNode, err.Error())
		return
	}
	a := s.app(r.App)
	if a == nil {
		s.refuse(m.from, r.Addr, r.Seq, CodeLimit, fmt.Sprintf("too many apps (limit %d)", s.opts.MaxApps))
		return
	}
	now := s.now()
	var e *nodeEntry
	var flags uint64
	if r.Flags&flagGuest != 0 {
		e = a.guests[r.Addr]
		switch {
		case e != nil && e.inc == r.Inc:
		case r.From > 0: // removed after a silence: register again, from 0
			e, flags = nil, syncNeedInfo
		case e == nil && len(a.guests) >= s.opts.MaxNodes:
			s.refuse(m.from, r.Addr, r.Seq, CodeLimit, fmt.Sprintf("too many guests (limit %d)", s.opts.MaxNodes))
			return
		default:
			e = &nodeEntry{addr: r.Addr, inc: r.Inc}
			a.guests[r.Addr] = e
		}
		if e != nil {
			e.lastSeen = now
		}
	} else {
		e = a.nodes[r.Addr]
		switch {
		case e != nil && e.inc == r.Inc:
			e.lastSeen = now
			changed := !e.alive || e.life != r.life()
			e.alive, e.life = true, r.life()
			if r.Info != nil && !e.info.equal(r.Info) {
				e.info = *r.Info
				changed = true
			}
			if changed {
				a.nodeChanged(e)
			}
		case e != nil && r.Inc == e.prevInc:
			s.refuse(m.from, r.Addr, r.Seq, CodeSuperseded, "a newer incarnation of this node has registered")
			return
		case r.Info == nil || r.From > 0:
			// Not registered (or removed): a registration carries every
			// pending change from 0 (with From > 0 there would be a gap
			// MARS could never fill).
			e, flags = nil, syncNeedInfo
		case e != nil: // the node restarted on the same address
			s.lastReg = now
			e.prevInc, e.inc, e.ack, e.durable, e.unsaved = e.inc, r.Inc, 0, 0, false
			e.info, e.alive, e.life, e.lastSeen = *r.Info, true, r.life(), now
			a.nodeChanged(e)
		default:
			if len(a.nodes) >= s.opts.MaxNodes {
				s.refuse(m.from, r.Addr, r.Seq, CodeLimit, fmt.Sprintf("too many nodes (limit %d)", s.opts.MaxNodes))
				return
			}
			e = &nodeEntry{addr: r.Addr, inc: r.Inc, info: *r.Info, alive: true, life: r.life(), lastSeen: now}
			a.addNode(e)
			s.lastReg = now
		}
	}
	var ack uint64
	var badKey, full int
	// Refusals of some keys go after the reply, so a node that sees the
	// refusal already holds the view with the changes that were applied.
	defer func() { s.refuseKeys(m.from, r, a.name, badKey, full) }()
	if e != nil {
		var changed bool
		changed, badKey, full = s.applyData(a, e, r, now)
		if changed && s.persist != nil {
			// Persist before acknowledging: the reply (and its ack) goes
			// out once the data file holds these changes.
			s.held[m.from] = heldReply{app: a.name, addr: r.Addr, guest: r.Flags&flagGuest != 0, inc: e.inc,
				marsInc: r.MarsInc, ver: r.Ver, flags: flags, echo: r.Seq, ack: e.ack, dig: r.Digest}
			e.unsaved = true
			select {
			case s.saveNow <- struct{}{}:
			default:
			}
			return
		}
		ack = e.ack
		if e.unsaved {
			ack = e.durable // a held reply acknowledges the rest after the save
		}
	}
	s.sendSync(m.from, a, r.Addr, r.MarsInc, r.Ver, flags, r.Seq, ack, r.Digest)
}

// applyData applies a report's seed and shared-data changes; it reports
// whether it applied any change (a seed is not one: it acknowledges nothing).
//
// Seed rule (re-registration after a MARS restart): a seeded key is added
// only if this MARS has no value for it and has not removed it since it
// started; the first value to arrive wins. When shared data was loaded from
// DataDir and the seeding node's view is older than the file (seedAt before
// the file's save time), the whole seed is ignored: the file already holds
// everything that view held, and its removals.
func (s *Server) applyData(a *appState, e *nodeEntry, r *report, now int64) (changed bool, badKey, full int) {
	if len(r.Seed) > 0 && (s.loadedAt == 0 || r.SeedAt*int64(time.Millisecond) >= s.loadedAt) {
		for _, kv := range r.Seed {
			switch {
			case CheckKey(kv.Key) != nil:
				badKey++
				continue
			case len(a.keys) >= s.opts.MaxSharedKeys:
				full++
				continue
			}
			if _, ok := a.keys[kv.Key]; ok {
				continue
			}
			if _, ok := a.goneKeys[kv.Key]; ok {
				continue
			}
			a.setKey(kv.Key, kv.Val)
			s.dirty = true
		}
	}
	for _, o := range r.Ops {
		if o.Seq <= e.ack || r.From > e.ack {
			// Applied already (a resend), or MARS missed changes before
			// this report: the reply's ack makes the node send them all
			// again, in order, so each applies exactly once.
			continue
		}
		if CheckKey(o.Key) != nil {
			badKey++
			continue
		}
		changed = true
		if o.Del {
			if a.removeKey(o.Key, now) {
				s.dirty = true
			} else if _, gone := a.goneKeys[o.Key]; !gone {
				// Not here yet (a restart: seeds from other views may
				// still come): remember the removal so no seed brings it
				// back.
				*a.clock++
				a.removeKeyAt(o.Key, *a.clock, now)
			}
			continue
		}
		cur, ok := a.keys[o.Key]
		if !ok && len(a.keys) >= s.opts.MaxSharedKeys {
			full++
			continue
		}
		if o.Add {
			o.Val += cur.val
		}
		if a.setKey(o.Key, o.Val) {
			s.dirty = true
		}
	}
	if r.From <= e.ack {
		e.ack = max(e.ack, r.Seq)
	}
	return changed, badKey, full
}

// refuseKeys tells a node how many of its shared-data keys were refused.
func (s *Server) refuseKeys(to netip.AddrPort, r *report, app string, badKey, full int) {
	if badKey > 0 {
		s.refuse(to, r.Addr, r.Seq, CodeBadKey, fmt.Sprintf("%d shared data keys refused: keys are 1..%d bytes", badKey, MaxKeyLen))
	}
	if full > 0 {
		s.refuse(to, r.Addr, r.Seq, CodeLimit, fmt.Sprintf("%d shared data keys refused: app %q holds the maximum of %d keys", full, app, s.opts.MaxSharedKeys))
	}
}

// sendSync answers a report with the changes since the node's version. A
// node whose view comes from another MARS incarnation may send its digest
// (dig): MARS then sends only what differs (server_digest.go).
func (s *Server) sendSync(to netip.AddrPort, a *appState, addr string, marsInc, ver, flags, echo, ack uint64, dig *digest) {
	q := s.queued(to)
	if q > replyBacklog {
		s.stats.skipped.Add(1)
		return
	}
	var parts [][]byte
	top := a.ver
	if s.st != nil {
		top = uint64(s.st.rev) // versions are store revisions, shared by the apps
	}
	if flags&syncNeedInfo != 0 {
		// The node must register first; the reply to its registration
		// carries the snapshot. (After a restart every node would
		// otherwise get the whole list twice.)
		s.sendSyncParts(to, q, syncHead{Addr: addr, MarsInc: s.inc, Flags: flags, Echo: echo, Ack: ack, From: ver, To: ver}, [][]byte{nil})
		return
	}
	full := a.needsFull(marsInc == s.inc, ver, top)
	if !full {
		var ok bool
		parts, ok = a.delta(ver)
		full = !ok
	}
	at := top
	if full && dig != nil && marsInc != s.inc && marsInc != 0 && s.st == nil && !s.noDigest {
		switch how, body := s.reconcile(a, addr, dig); how {
		case reconcileWait:
			s.stats.waits.Add(1)
			s.sendSyncParts(to, q, syncHead{Addr: addr, MarsInc: s.inc, Flags: flags | syncWait, Echo: echo, Ack: ack, From: ver, To: ver}, [][]byte{nil})
			return
		case reconcileBuckets:
			s.stats.buckets.Add(1)
			s.sendSyncParts(to, q, syncHead{Addr: addr, MarsInc: s.inc, Flags: flags | syncFull | syncBuckets, Echo: echo, Ack: ack, To: top}, body)
			return
		}
	}
	if full {
		seen := ver
		if marsInc != s.inc {
			seen = 0 // a version of another MARS means nothing here
		}
		parts, at = a.full(s.now(), seen)
		if at == a.ver {
			at = top
		}
		flags |= syncFull
		ver = 0
		s.stats.fulls.Add(1)
	}
	s.sendSyncParts(to, q, syncHead{Addr: addr, MarsInc: s.inc, Flags: flags, Echo: echo, Ack: ack, From: ver, To: at}, parts)
}

// sendSyncParts sends a sync of one or more body parts; q is what the
// peer's queue holds. The body parts (a snapshot's are shared by every node
// it goes to) are sent as they are, after a per-node head.
func (s *Server) sendSyncParts(to netip.AddrPort, q int, h syncHead, parts [][]byte) {
	flags := h.Flags
	if !s.noKV {
		flags |= syncKV
	}
	for i, body := range parts {
		h.Part, h.Flags = uint64(i), flags
		if i < len(parts)-1 {
			h.Flags |= syncMore
		}
		s.buf = appendSyncHead(s.buf[:0], &h, len(body) > 0)
		n := len(s.buf) + len(body)
		if !s.fits(q, n+frameOverheadSize) {
			// The rest would block: drop it; the node discards the parts it
			// got and asks again.
			s.stats.skipped.Add(1)
			s.warn.Warn("mars: sync larger than the peer's queue allows, dropped", "peer", to, "parts", len(parts))
			break
		}
		if !s.sendNoWaitMsg(to, KindSync, s.buf, body) {
			break
		}
		q += n + frameOverheadSize
		s.stats.syncs.Add(1)
		s.stats.syncBytes.Add(uint64(n))
	}
}

func (s *Server) handleLeave(m inMsg) {
	s.stats.leaves.Add(1)
	l, err := decodeLeave(m.p)
	if err != nil {
		s.refuse(m.from, "", 0, CodeBadMessage, err.Error())
		return
	}
	if err := s.checkSender(m.from, l.Addr); err != nil {
		s.refuse(m.from, l.Addr, 0, CodeBadNode, err.Error())
		return
	}
	a := s.apps[l.App]
	if a == nil {
		return
	}
	if g := a.guests[l.Addr]; g != nil && g.inc == l.Inc {
		delete(a.guests, l.Addr)
	}
	if e := a.nodes[l.Addr]; e != nil && e.inc == l.Inc {
		s.nodeRemoved(a, e, s.now())
		a.removeNode(l.Addr, goneLeft, s.now())
	}
}

// checkSender checks that a report or leave for the mesh address addr came
// from that address's own session: a node speaks only for itself. Mesh
// nodes list the address they send from (a node bound to 0.0.0.0 lists the
// local IP that routes to MARS, which is the source MARS sees), and so do
// guests.
func (s *Server) checkSender(from netip.AddrPort, addr string) error {
	if s.opts.TrustReportedAddr {
		return nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("%w: mesh address %q is not ip:port (it must be the address the node sends from, %s)", ErrBadNode, addr, from)
	}
	if netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) != netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) {
		return fmt.Errorf("%w: a message for %s came from %s: a node may speak only for its own address", ErrBadNode, addr, from)
	}
	return nil
}
