package mars

// The request path of a server over a Store (server_store.go): messages
// from nodes, reports, takeovers and replies.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"
)

// storeMessage takes a message on the transport's read goroutine, under
// s.mu: a heartbeat of a node with nothing queued is answered at once from
// the copy; everything else goes to the worker of its node (so one node's
// messages stay in order), never waiting.
func (s *Server) storeMessage(m inMsg) {
	if m.kind == KindKV {
		s.kvStoreMessage(m) // kv_store.go
		return
	}
	st := s.st
	m.node = peekNode(m.kind, m.p)
	if m.node == "" {
		m.node = m.from.String()
	}
	if m.kind == KindReport && st.pending[m.node] == 0 && s.storeHeartbeat(m) {
		return
	}
	q := st.queues[maphash.String(st.seed, m.node)%uint64(len(st.queues))]
	m.at = s.now()
	select {
	case q <- m:
		st.pending[m.node]++
	default:
		s.stats.skipped.Add(1)
		s.warn.Warn("mars: store workers behind, dropping a message (the node sends again)", "from", m.from)
	}
}

// peekNode reads the mesh address of a report or leave without decoding
// the rest ("" if it cannot).
func peekNode(kind byte, p []byte) string {
	r := reader{b: p}
	r.arrayLen()
	switch kind {
	case KindReport:
		r.uint()
		r.str(MaxAppLen * 4)
	case KindLeave:
		r.str(MaxAppLen * 4)
	default:
		return ""
	}
	addr := r.str(MaxAddrLen)
	if r.err != nil {
		return ""
	}
	return addr
}

// storeHeartbeat answers a report that changes nothing from the copy (under
// s.mu, on the read goroutine); false leaves it to a worker.
func (s *Server) storeHeartbeat(m inMsg) bool {
	st := s.st
	r, err := decodeReport(m.p)
	if err != nil || len(r.Ops) > 0 || len(r.Seed) > 0 || r.MarsInc == s.inc && int64(r.Ver) > st.rev {
		return false
	}
	if code, _ := s.checkReport(m.from, r); code != 0 {
		return false
	}
	a := s.apps[r.App]
	if a == nil {
		return false
	}
	guest := r.Flags&flagGuest != 0
	kind, e := StoreNode, a.nodes[r.Addr]
	if guest {
		kind, e = StoreGuest, a.guests[r.Addr]
	}
	if e == nil || e.inc != r.Inc || !(e.alive || guest) || r.Info != nil && !e.info.equal(r.Info) ||
		!guest && e.life != r.life() {
		return false
	}
	s.stats.reports.Add(1)
	s.noteReport(m.p)
	if e.owner != st.owner {
		s.takeOver(StoreKey{App: r.App, Kind: kind, Name: r.Addr})
	}
	e.lastSeen = s.now()
	s.sendSync(m.from, a, r.Addr, r.MarsInc, r.Ver, 0, r.Seq, e.ack, nil)
	return true
}

func (s *Server) storeWorker(q chan inMsg) {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case m := <-q:
			s.mu.Lock()
			// A report that waited over storeCatchUp (this replica fell
			// behind, e.g. while the store was away) with a newer message
			// of its node queued behind it is skipped: the newer one is
			// answered, and the node sends again what the skipped one
			// carried and MARS did not apply. Answering each would take
			// that many store writes, with the node long gone elsewhere.
			superseded := m.kind == KindReport && s.st.pending[m.node] > 1 && s.now()-m.at > int64(storeCatchUp)
			s.mu.Unlock()
			switch {
			case superseded:
				s.stats.skipped.Add(1)
			case m.kind == KindReport:
				s.storeReport(m)
			case m.kind == KindLeave:
				s.storeLeave(m)
			default:
				s.mu.Lock()
				if !s.closed {
					s.handle(m)
				}
				s.mu.Unlock()
			}
			s.mu.Lock()
			if s.st.pending[m.node]--; s.st.pending[m.node] <= 0 {
				delete(s.st.pending, m.node)
			}
			s.mu.Unlock()
		}
	}
}

func (s *Server) refuseNow(to netip.AddrPort, addr string, echo uint64, code int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.refuse(to, addr, echo, code, msg)
	}
}

// storeReport handles a report on a server over a Store.
func (s *Server) storeReport(m inMsg) {
	s.stats.reports.Add(1)
	s.noteReport(m.p)
	r, err := decodeReport(m.p)
	if err != nil {
		s.refuseNow(m.from, "", 0, CodeBadMessage, err.Error())
		return
	}
	if code, msg := s.checkReport(m.from, r); code != 0 {
		s.refuseNow(m.from, r.Addr, r.Seq, code, msg)
		return
	}
	guest := r.Flags&flagGuest != 0
	kind := StoreNode
	if guest {
		kind = StoreGuest
	}
	st := s.st
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	a := s.apps[r.App]
	if a == nil && len(s.apps) >= s.opts.MaxApps {
		s.mu.Unlock()
		s.refuseNow(m.from, r.Addr, r.Seq, CodeLimit, fmt.Sprintf("too many apps (limit %d)", s.opts.MaxApps))
		return
	}
	if a == nil {
		a = s.storeApp(r.App, uint64(st.rev))
	}
	e := a.nodes[r.Addr]
	count := len(a.nodes)
	if guest {
		e, count = a.guests[r.Addr], len(a.guests)
	}
	switch {
	case e != nil && e.inc == r.Inc && (e.alive || guest) && (guest || e.life == r.life()) &&
		(r.Info == nil || e.info.equal(r.Info)) && len(r.Ops) == 0 && len(r.Seed) == 0:
		// A heartbeat: nothing to write, but a node that moved here from
		// another replica has its record taken over, in batches.
		if e.owner != st.owner {
			s.takeOver(StoreKey{App: r.App, Kind: kind, Name: r.Addr})
		}
		e.lastSeen = s.now()
		s.replyLocked(m.from, a, r, 0, e.ack)
		s.mu.Unlock()
		return
	case e != nil && e.inc != r.Inc && r.Inc == e.prevInc:
		s.refuse(m.from, r.Addr, r.Seq, CodeSuperseded, "a newer incarnation of this node has registered")
		s.mu.Unlock()
		return
	case (e == nil || e.inc != r.Inc) && r.Info == nil && !guest:
		s.replyLocked(m.from, a, r, syncNeedInfo, 0)
		s.mu.Unlock()
		return
	case e == nil && count >= s.opts.MaxNodes:
		s.mu.Unlock()
		what := "nodes"
		if guest {
			what = "guests"
		}
		s.refuseNow(m.from, r.Addr, r.Seq, CodeLimit, fmt.Sprintf("too many %s (limit %d)", what, s.opts.MaxNodes))
		return
	}
	keys := len(a.keys)
	var gone map[string]bool
	for _, kv := range r.Seed {
		if _, ok := a.goneKeys[kv.Key]; ok {
			if gone == nil {
				gone = make(map[string]bool)
			}
			gone[kv.Key] = true
		}
	}
	s.mu.Unlock()

	rev, ack, badKey, full, err := s.storeWrite(r, kind, keys, gone)
	switch {
	case errors.Is(err, errSuperseded):
		s.refuseNow(m.from, r.Addr, r.Seq, CodeSuperseded, "a newer incarnation of this node has registered")
		return
	case errors.Is(err, errNeedInfo):
		s.mu.Lock()
		if !s.closed {
			s.replyLocked(m.from, a, r, syncNeedInfo, 0)
		}
		s.mu.Unlock()
		return
	case err != nil:
		// No answer: the node sends again, or moves to another replica.
		s.storeFailed()
		s.warn.Warn("mars: store write failed", "node", r.Addr, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.waitRev(rev) || s.closed {
		return
	}
	defer s.refuseKeys(m.from, r, r.App, badKey, full) // after the reply, as without a store
	a = s.apps[r.App]
	if a == nil {
		return
	}
	if e := a.nodes[r.Addr]; !guest && e != nil && e.inc == r.Inc {
		e.lastSeen = s.now()
	} else if g := a.guests[r.Addr]; guest && g != nil && g.inc == r.Inc {
		g.lastSeen = s.now()
	}
	s.replyLocked(m.from, a, r, 0, ack)
}

// takeOver queues a node record for takeoverLoop (under s.mu).
func (s *Server) takeOver(k StoreKey) {
	st := s.st
	if st.taking[k] {
		return
	}
	select {
	case st.takeCh <- k:
		st.taking[k] = true
	default: // the next heartbeat asks again
	}
}

// takeoverLoop makes this replica the owner of the records of nodes that
// moved here (after their replica died, their records expire with its
// session unless taken over), storeChunk/2 records per transaction: after a
// replica kill, thousands of nodes arrive within seconds, and their first
// replies do not wait for these writes.
func (s *Server) takeoverLoop() {
	defer s.wg.Done()
	st := s.st
	for {
		var batch []StoreKey
		select {
		case <-st.ctx.Done():
			return
		case k := <-st.takeCh:
			batch = append(batch, k)
		}
		linger := time.NewTimer(10 * time.Millisecond)
	fill:
		for len(batch) < storeChunk/2 {
			select {
			case k := <-st.takeCh:
				batch = append(batch, k)
			case <-linger.C:
				break fill
			case <-st.ctx.Done():
				linger.Stop()
				return
			}
		}
		linger.Stop()
		ctx, cancel := context.WithTimeout(st.ctx, storeTimeout)
		_, err := st.store.Update(ctx, batch, func(cur []StoreRecord) ([]StoreWrite, error) {
			var w []StoreWrite
			for _, c := range cur {
				n, err := DecodeStoredNode(c.Value)
				if c.Rev == 0 || err != nil || n.Owner == st.owner {
					continue
				}
				n.Owner = st.owner
				w = append(w, StoreWrite{StoreKey: c.StoreKey, Value: EncodeStoredNode(n), Session: true})
			}
			return w, nil
		})
		cancel()
		if err != nil {
			s.storeFailed()
			s.warn.Warn("mars: store write failed (taking over nodes)", "nodes", len(batch), "err", err)
		}
		s.mu.Lock()
		for _, k := range batch {
			delete(st.taking, k)
		}
		s.mu.Unlock()
	}
}

// checkReport is the checks of a report that need no state.
func (s *Server) checkReport(from netip.AddrPort, r *report) (int, string) {
	if err := CheckApp(r.App); err != nil {
		return CodeBadApp, err.Error()
	}
	if r.App == "" && s.opts.RequireApp {
		return CodeBadApp, "this MARS requires an app name"
	}
	if err := checkAddr("mesh address", r.Addr, true); err != nil {
		return CodeBadNode, err.Error()
	}
	if r.Info != nil {
		if err := r.Info.check(); err != nil {
			return CodeBadNode, err.Error()
		}
		r.Info.Values = bytes.Clone(r.Info.Values)
	}
	if err := s.checkSender(from, r.Addr); err != nil {
		return CodeBadNode, err.Error()
	}
	return 0, ""
}

// replyLocked answers a report from the copy, once it has caught up with
// the node's view.
func (s *Server) replyLocked(to netip.AddrPort, a *appState, r *report, flags, ack uint64) {
	if r.MarsInc == s.inc && int64(r.Ver) > s.st.rev && !s.waitRev(int64(r.Ver)) {
		s.warn.Warn("mars: the store copy is behind a node's view; sending a full snapshot", "node", r.Addr)
	}
	if s.closed {
		return
	}
	if cur := s.apps[a.name]; cur != nil {
		a = cur // the copy may have been loaded again meanwhile
	}
	s.sendSync(to, a, r.Addr, r.MarsInc, r.Ver, flags, r.Seq, ack, nil)
}
