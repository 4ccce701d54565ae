package mars

// A server over a Store (ServerOptions.Store): one replica of a registry
// whose state lives in the store.
//
// The server keeps a copy of the whole state (s.apps, the same structure a
// server without a store uses) built by Store.Load and kept current by
// Store.Watch, with versions taken from the store's revisions; deltas and
// snapshots come from that copy. A report that changes something (a node
// registers, takes over from another replica, changes its info; shared-data
// operations) becomes one Store.Update: the node record holds Ack, the
// change number up to which the node's operations are applied, so
// operations apply exactly once whichever replica receives them, also when
// they are sent again after a failover. The reply waits until the copy has
// caught up with the write. A heartbeat writes nothing.
//
// Liveness: the replica that serves a node (the record's Owner) writes its
// record with its session, so the record expires when that replica dies
// without a successor. It marks the node offline after OfflineAfter +
// min(2 s, OfflineAfter) of silence (the node may have moved to a replica
// that has not taken it over yet) and removes it after RemoveAfter. A node
// that moves to another replica re-owns its record at its first report
// there.
//
// Store calls run on the server's workers (reports and leaves, hashed by
// node so one node's messages stay in order), on its sweeper and on its
// takeover loop; never on the transport's read goroutine (which answers the
// heartbeats of nodes with nothing queued from the copy), never under s.mu.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"sync"
	"time"
)

const (
	storeWorkers    = 16
	storeQueue      = 2048
	storeTimeout    = 5 * time.Second
	storeChunk      = 100 // keys per Update (etcd allows 128 operations per transaction)
	storeCatchUp    = 2 * time.Second
	storeSweepBatch = 256
	storeMoveGrace  = 2 * time.Second
)

var (
	errSuperseded = errors.New("superseded")
	errNeedInfo   = errors.New("need info")
)

// storeState is the part of a Server that only a server over a Store has.
type storeState struct {
	store  Store
	owner  uint64 // this replica
	ctx    context.Context
	cancel context.CancelFunc
	queues []chan inMsg
	seed   maphash.Seed
	takeCh chan StoreKey // nodes whose records this replica should own (takeoverLoop)
	// keyLocks serialise this replica's writes of one shared key (striped):
	// a hot key written from many nodes would otherwise make the workers'
	// optimistic transactions conflict and retry; only other replicas'
	// writes still conflict.
	keyLocks [64]sync.Mutex
	// under s.mu:
	rev     int64         // the copy holds every change up to here
	revCh   chan struct{} // closed and replaced when rev grows
	taking  map[StoreKey]bool
	pending map[string]int // messages queued per node
}

func (s *Server) startStore() error {
	st := s.st
	ctx, cancel := context.WithTimeout(st.ctx, storeTimeout)
	defer cancel()
	recs, rev, err := st.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("mars: load the store: %w", err)
	}
	s.mu.Lock()
	s.installLoaded(recs, rev)
	s.mu.Unlock()
	st.pending = make(map[string]int)
	st.queues = make([]chan inMsg, storeWorkers)
	for i := range st.queues {
		st.queues[i] = make(chan inMsg, storeQueue)
		s.wg.Add(1)
		go s.storeWorker(st.queues[i])
	}
	st.takeCh = make(chan StoreKey, 1<<16)
	st.taking = make(map[StoreKey]bool)
	s.wg.Add(2)
	go s.storeWatch()
	go s.takeoverLoop()
	return nil
}

// installLoaded replaces the copy with what Load returned, at revision rev.
// Nodes whose view is older get a full snapshot (the horizon is rev).
func (s *Server) installLoaded(recs []StoreRecord, rev int64) {
	now := s.now()
	seen := make(map[StoreKey]int64) // lastSeen of the nodes this replica owned
	for name, a := range s.apps {
		for addr, e := range a.nodes {
			if e.owner == s.st.owner {
				seen[StoreKey{name, StoreNode, addr}] = e.lastSeen
			}
		}
		for addr, e := range a.guests {
			if e.owner == s.st.owner {
				seen[StoreKey{name, StoreGuest, addr}] = e.lastSeen
			}
		}
	}
	s.apps = make(map[string]*appState)
	slices.SortFunc(recs, func(x, y StoreRecord) int { return int(min(max(x.Rev-y.Rev, -1), 1)) })
	for _, r := range recs {
		s.applyRecord(r, now)
	}
	for name, a := range s.apps {
		a.horizon = max(a.horizon, uint64(rev))
		a.ver = max(a.ver, uint64(rev))
		for addr, e := range a.nodes {
			if t, ok := seen[StoreKey{name, StoreNode, addr}]; ok {
				e.lastSeen = t
			}
		}
		for addr, e := range a.guests {
			if t, ok := seen[StoreKey{name, StoreGuest, addr}]; ok {
				e.lastSeen = t
			}
		}
	}
	s.advance(rev)
}

func (s *Server) advance(rev int64) {
	st := s.st
	if rev > st.rev {
		st.rev = rev
		close(st.revCh)
		st.revCh = make(chan struct{})
	}
}

// storeApp returns the copy of an app, creating an empty one that has seen
// everything up to v.
func (s *Server) storeApp(name string, v uint64) *appState {
	a := s.apps[name]
	if a == nil {
		a = newAppStateAt(name, v)
		s.apps[name] = a
	}
	return a
}

// applyRecord applies one record (loaded or watched) to the copy.
func (s *Server) applyRecord(r StoreRecord, now int64) {
	v := uint64(r.Rev)
	a := s.apps[r.App]
	if a == nil {
		if r.Deleted {
			return
		}
		a = s.storeApp(r.App, v-1)
	}
	switch r.Kind {
	case StoreShared:
		if r.Deleted {
			if _, ok := a.keys[r.Name]; ok {
				a.removeKeyAt(r.Name, v, now)
			}
			return
		}
		val, err := DecodeStoredValue(r.Value)
		if err != nil {
			s.warn.Warn("mars: skipped a bad shared value in the store", "app", r.App, "key", r.Name, "err", err)
			return
		}
		a.setKeyAt(r.Name, val, v)
	case StoreNode, StoreGuest:
		m := a.nodes
		if r.Kind == StoreGuest {
			m = a.guests
		}
		e := m[r.Name]
		if r.Deleted {
			if e == nil {
				return
			}
			if r.Kind == StoreGuest {
				delete(m, r.Name)
				return
			}
			s.nodeRemoved(a, e, now)
			a.removeNodeAt(r.Name, v, now)
			return
		}
		n, err := DecodeStoredNode(r.Value)
		if err != nil {
			s.warn.Warn("mars: skipped a bad node record in the store", "app", r.App, "node", r.Name, "err", err)
			return
		}
		info := n.info()
		visible := true // what nodes see changed (not only Ack or Owner)
		if e == nil {
			e = &nodeEntry{addr: r.Name, lastSeen: now}
			m[r.Name] = e
		} else {
			visible = e.inc != n.Inc || e.alive != n.Alive || !e.info.equal(&info)
			if e.owner != s.st.owner && n.Owner == s.st.owner {
				e.lastSeen = now // this replica takes over: its silence counts from now
			}
		}
		e.inc, e.prevInc, e.info, e.alive, e.ack, e.owner = n.Inc, n.PrevInc, info, n.Alive, n.Ack, n.Owner
		if r.Kind == StoreNode && visible {
			a.nodeChangedAt(e, v)
		}
	}
}

// storeWatch keeps the copy current; when the watch fails it loads the
// whole state again.
func (s *Server) storeWatch() {
	defer s.wg.Done()
	st := s.st
	for {
		s.mu.Lock()
		rev := st.rev
		s.mu.Unlock()
		err := st.store.Watch(st.ctx, rev, func(changes []StoreRecord, rev int64) {
			s.mu.Lock()
			defer s.mu.Unlock()
			now := s.now()
			for _, r := range changes {
				s.applyRecord(r, now)
			}
			s.advance(rev)
		})
		if st.ctx.Err() != nil {
			return
		}
		s.log.Warn("mars: store watch ended; loading the state again", "err", err)
		select {
		case <-st.ctx.Done():
			return
		case <-time.After(time.Second):
		}
		ctx, cancel := context.WithTimeout(st.ctx, storeTimeout)
		recs, rev, err := st.store.Load(ctx)
		cancel()
		if err != nil {
			s.log.Warn("mars: cannot load the store", "err", err)
			continue
		}
		s.mu.Lock()
		s.installLoaded(recs, rev)
		s.mu.Unlock()
	}
}

// waitRev waits (under s.mu, which it releases meanwhile) until the copy
// holds revision want, asking the store for progress; false on timeout.
func (s *Server) waitRev(want int64) bool {
	st := s.st
	if st.rev >= want {
		return true
	}
	t := time.NewTimer(storeCatchUp)
	defer t.Stop()
	asked := false
	for st.rev < want {
		ch := st.revCh
		s.mu.Unlock()
		if !asked {
			asked = true
			ctx, cancel := context.WithTimeout(st.ctx, storeCatchUp)
			st.store.Progress(ctx)
			cancel()
		}
		select {
		case <-ch:
		case <-t.C:
			s.mu.Lock()
			return st.rev >= want
		case <-st.ctx.Done():
			s.mu.Lock()
			return false
		}
		s.mu.Lock()
	}
	return true
}

// storeMessage takes a message on the transport's read goroutine, under
// s.mu: a heartbeat of a node with nothing queued is answered at once from
// the copy; everything else goes to the worker of its node (so one node's
// messages stay in order), never waiting.
func (s *Server) storeMessage(m inMsg) {
	st := s.st
	m.node = peekNode(m.kind, m.p)
	if m.node == "" {
		m.node = m.from.String()
	}
	if m.kind == KindReport && st.pending[m.node] == 0 && s.storeHeartbeat(m) {
		return
	}
	q := st.queues[maphash.String(st.seed, m.node)%uint64(len(st.queues))]
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
	if e == nil || e.inc != r.Inc || !(e.alive || guest) || r.Info != nil && !e.info.equal(r.Info) {
		return false
	}
	s.stats.reports.Add(1)
	s.noteReport(m.p)
	if e.owner != st.owner {
		s.takeOver(StoreKey{App: r.App, Kind: kind, Name: r.Addr})
	}
	e.lastSeen = s.now()
	s.sendSync(m.from, a, r.Addr, r.MarsInc, r.Ver, 0, r.Seq, e.ack)
	return true
}

func (s *Server) storeWorker(q chan inMsg) {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case m := <-q:
			switch m.kind {
			case KindReport:
				s.storeReport(m)
			case KindLeave:
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
	case e != nil && e.inc == r.Inc && (e.alive || guest) &&
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
	s.sendSync(to, a, r.Addr, r.MarsInc, r.Ver, flags, r.Seq, ack)
}

// storeWrite writes a report's seed, node record and operations, in
// transactions of at most storeChunk keys. It returns the revision of the
// last write and the node's ack.
func (s *Server) storeWrite(r *report, kind StoreKind, keys int, gone map[string]bool) (rev int64, ack uint64, badKey, full int, err error) {
	st := s.st
	ctx, cancel := context.WithTimeout(st.ctx, storeTimeout)
	defer cancel()
	nodeKey := StoreKey{App: r.App, Kind: kind, Name: r.Addr}
	// The seed: keys the store does not hold and this replica has not seen
	// removed. It acknowledges nothing, so it may go in several writes.
	for seed := r.Seed; len(seed) > 0; {
		n := min(len(seed), storeChunk)
		chunk := seed[:n]
		seed = seed[n:]
		var ks []StoreKey
		for _, kv := range chunk {
			if CheckKey(kv.Key) != nil {
				badKey++
				continue
			}
			if !gone[kv.Key] {
				ks = append(ks, StoreKey{App: r.App, Kind: StoreShared, Name: kv.Key})
			}
		}
		vals := make(map[string]int16, len(chunk))
		for _, kv := range chunk {
			vals[kv.Key] = kv.Val
		}
		if len(ks) == 0 {
			continue
		}
		rv, err := st.store.Update(ctx, ks, func(cur []StoreRecord) ([]StoreWrite, error) {
			var w []StoreWrite
			for _, c := range cur {
				if c.Rev == 0 && keys+len(w) < s.opts.MaxSharedKeys {
					w = append(w, StoreWrite{StoreKey: c.StoreKey, Value: EncodeStoredValue(vals[c.Name])})
				}
			}
			return w, nil
		})
		if err != nil {
			return 0, 0, badKey, full, err
		}
		rev = max(rev, rv)
	}
	// The node record and the operations, storeChunk keys at a time; each
	// transaction moves Ack to the last change it applies.
	ops := r.Ops
	from := r.From // the chunk covers the changes in (from, to]
	for first := true; first || len(ops) > 0; first = false {
		n := min(len(ops), storeChunk)
		chunk := ops[:n]
		ops = ops[n:]
		to := r.Seq
		if len(ops) > 0 {
			to = chunk[n-1].Seq
		}
		chunkFrom := from
		from = to
		ks := []StoreKey{nodeKey}
		idx := make(map[string]int)
		for _, o := range chunk {
			if _, ok := idx[o.Key]; !ok && CheckKey(o.Key) == nil {
				idx[o.Key] = len(ks)
				ks = append(ks, StoreKey{App: r.App, Kind: StoreShared, Name: o.Key})
			}
		}
		var bad, fl int
		unlock := s.lockKeys(ks[1:])
		rv, err := st.store.Update(ctx, ks, func(cur []StoreRecord) ([]StoreWrite, error) {
			bad, fl = 0, 0
			var old *StoredNode
			if cur[0].Rev != 0 {
				old, _ = DecodeStoredNode(cur[0].Value) // a bad record is replaced
			}
			var nn StoredNode
			switch {
			case old != nil && old.Inc == r.Inc:
				nn = *old
			case old != nil && old.PrevInc == r.Inc:
				return nil, errSuperseded
			case r.Info == nil && kind == StoreNode, r.From > 0:
				// Unknown here (or its record expired): a registration
				// carries every pending change from 0; changes after From
				// alone would leave a gap MARS could never fill.
				return nil, errNeedInfo
			case old != nil: // the node restarted on the same address
				nn = StoredNode{PrevInc: old.Inc, Inc: r.Inc}
			default:
				nn = StoredNode{Inc: r.Inc}
			}
			nn.Alive, nn.Owner = true, st.owner
			if r.Info != nil {
				nn.setInfo(r.Info)
			} else if kind == StoreGuest {
				nn.Status = StatusOnline
			}
			var w []StoreWrite
			if chunkFrom <= nn.Ack { // else MARS misses changes before: the node sends them again
				vals := make(map[string]*int16, len(cur))
				for _, c := range cur[1:] {
					if c.Rev != 0 {
						if v, err := DecodeStoredValue(c.Value); err == nil {
							vals[c.Name] = &v
						}
					}
				}
				added := 0
				for _, o := range chunk {
					if o.Seq <= nn.Ack {
						continue
					}
					i, ok := idx[o.Key]
					if !ok {
						bad++
						continue
					}
					k := cur[i].StoreKey
					if o.Del {
						if vals[o.Key] != nil {
							vals[o.Key] = nil
							w = append(w, StoreWrite{StoreKey: k, Delete: true})
						}
						continue
					}
					v := o.Val
					if p := vals[o.Key]; p != nil && o.Add {
						v += *p
					} else if p == nil && keys+added >= s.opts.MaxSharedKeys {
						fl++
						continue
					} else if p == nil {
						added++
					}
					vals[o.Key] = &v
					w = append(w, StoreWrite{StoreKey: k, Value: EncodeStoredValue(v)})
				}
				nn.Ack = max(nn.Ack, to)
			}
			ack = nn.Ack
			enc := EncodeStoredNode(&nn)
			if cur[0].Rev == 0 || !bytes.Equal(enc, cur[0].Value) || len(w) > 0 {
				w = append(w, StoreWrite{StoreKey: nodeKey, Value: enc, Session: true})
			}
			return w, nil
		})
		unlock()
		if err != nil {
			return 0, ack, badKey, full, err
		}
		badKey, full = badKey+bad, full+fl
		rev = max(rev, rv)
	}
	return rev, ack, badKey, full, nil
}

// lockKeys locks the stripes of keys (in order) and returns the unlock.
func (s *Server) lockKeys(keys []StoreKey) func() {
	var idx []int
	for _, k := range keys {
		i := int(maphash.String(s.st.seed, k.App+"\x00"+k.Name) % uint64(len(s.st.keyLocks)))
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		s.st.keyLocks[i].Lock()
	}
	return func() {
		for _, i := range idx {
			s.st.keyLocks[i].Unlock()
		}
	}
}

// storeLeave handles a graceful leave on a server over a Store.
func (s *Server) storeLeave(m inMsg) {
	s.stats.leaves.Add(1)
	l, err := decodeLeave(m.p)
	if err != nil {
		s.refuseNow(m.from, "", 0, CodeBadMessage, err.Error())
		return
	}
	if err := s.checkSender(m.from, l.Addr); err != nil {
		s.refuseNow(m.from, l.Addr, 0, CodeBadNode, err.Error())
		return
	}
	if CheckApp(l.App) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.st.ctx, storeTimeout)
	defer cancel()
	for _, kind := range []StoreKind{StoreNode, StoreGuest} {
		key := StoreKey{App: l.App, Kind: kind, Name: l.Addr}
		_, err := s.st.store.Update(ctx, []StoreKey{key}, func(cur []StoreRecord) ([]StoreWrite, error) {
			n, err := DecodeStoredNode(cur[0].Value)
			if cur[0].Rev == 0 || err != nil || n.Inc != l.Inc {
				return nil, nil
			}
			if kind == StoreGuest {
				return []StoreWrite{{StoreKey: key, Delete: true}}, nil
			}
			if !n.Alive {
				return nil, nil
			}
			n.Alive = false
			return []StoreWrite{{StoreKey: key, Value: EncodeStoredNode(n), Session: true}}, nil
		})
		if err != nil {
			s.warn.Warn("mars: store write failed", "node", l.Addr, "err", err)
		}
	}
}

// storeSweep applies liveness to the nodes this replica serves: silent
// ones are marked offline, then removed. It runs on the server's own
// goroutine; the writes check that the record is still this replica's.
func (s *Server) storeSweep() {
	type job struct {
		key    StoreKey
		inc    uint64
		remove bool
	}
	var jobs []job
	s.mu.Lock()
	now := s.now()
	// A node silent here may have moved to another replica that has not
	// taken its record over yet: wait storeMoveGrace longer before listing
	// it offline.
	offline := int64(s.opts.OfflineAfter + min(storeMoveGrace, s.opts.OfflineAfter))
	remove := int64(s.opts.RemoveAfter)
	maxTombs := s.opts.MaxNodes + s.opts.MaxSharedKeys
	for name, a := range s.apps {
		for addr, e := range a.nodes {
			if e.owner != s.st.owner || len(jobs) >= storeSweepBatch {
				continue
			}
			silent := now - e.lastSeen
			switch {
			case silent > remove:
				jobs = append(jobs, job{StoreKey{name, StoreNode, addr}, e.inc, true})
			case silent > offline && e.alive:
				jobs = append(jobs, job{StoreKey{name, StoreNode, addr}, e.inc, false})
			}
		}
		for addr, g := range a.guests {
			if g.owner == s.st.owner && now-g.lastSeen > remove && len(jobs) < storeSweepBatch {
				jobs = append(jobs, job{StoreKey{name, StoreGuest, addr}, g.inc, true})
			}
		}
		a.expireTombs(now, int64(s.opts.TombstoneTTL), maxTombs)
		a.compact()
		if a.fullVer != a.ver && now-a.fullAt >= fullReuse {
			a.fullParts = nil
		}
		if a.empty() {
			delete(s.apps, name)
		}
	}
	s.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.st.ctx, storeTimeout)
	defer cancel()
	for _, j := range jobs {
		_, err := s.st.store.Update(ctx, []StoreKey{j.key}, func(cur []StoreRecord) ([]StoreWrite, error) {
			n, err := DecodeStoredNode(cur[0].Value)
			if cur[0].Rev == 0 || err != nil || n.Inc != j.inc || n.Owner != s.st.owner {
				return nil, nil
			}
			if j.remove {
				return []StoreWrite{{StoreKey: j.key, Delete: true}}, nil
			}
			if !n.Alive {
				return nil, nil
			}
			n.Alive = false
			return []StoreWrite{{StoreKey: j.key, Value: EncodeStoredNode(n), Session: true}}, nil
		})
		if err != nil {
			s.warn.Warn("mars: store write failed", "node", j.key.Name, "err", err)
			return
		}
	}
}
