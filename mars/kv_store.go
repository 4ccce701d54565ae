package mars

// The key-value store and leases on a replica over a Store.
//
// Every replica keeps a copy of the keys and leases (kvApp, the same as
// without a Store), loaded with the rest of the state and kept current by
// the store's watch; reads and watch polls are answered from it on the
// read goroutine. Writes go to the replica's KV workers (hashed by key, so
// one key's writes on a replica queue instead of conflicting) and become
// store transactions:
//
//   - A put or delete writes the key and a result record named after the
//     node's write (address, incarnation, seq) in one transaction; a
//     resend finds the result record and answers with its revision instead
//     of writing again, on whichever replica it lands. Result records hang
//     on a store lease and go after kvResultTTL; a node stops resending a
//     write after kvResultKeep.
//   - A key with a TTL hangs on a store lease of its own: the store (etcd)
//     removes it when the lease expires. Such a removal reaches watches as
//     a deletion.
//   - A claim grants a store lease of the TTL and writes the lease record
//     on it, if no other node's record exists; its token is the record's
//     revision. A renewal keeps the store lease alive (any replica can), a
//     release deletes the record and revokes the lease, and a holder that
//     dies leaves the key free when the store lease expires, by the
//     store's clock: replicas' clocks play no part.
//
// The reply to a write waits until this replica's copy holds it, so the
// node reads its own write on this replica at once; a read carries the
// highest revision its node has seen and waits for the copy to reach it,
// so the node reads its own writes on any replica.

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"
)

const (
	kvWorkers     = 16
	kvQueue       = 4096
	kvResultTTL   = 6 * time.Minute
	kvResultRenew = time.Minute
	// kvResultKeep is how long a node resends a write; its result record
	// outlives it.
	kvResultKeep = 4 * time.Minute
)

type kvJob struct {
	from netip.AddrPort
	req  *kvReq
}

// kvStoreState is the part of kvServer only a replica has.
type kvStoreState struct {
	queues  []chan kvJob
	waiting []heldKV // replies to writes the copy does not hold yet
	base    int64    // the copy was loaded at this revision
	leaser  StoreLeaser
	resLock chan struct{} // guards resSID, resAt
	resSID  int64
	resAt   time.Time
}

// kvStart starts the KV workers of a replica.
func (s *Server) kvStart() {
	k := &s.kv
	k.st.leaser, _ = s.st.store.(StoreLeaser)
	k.st.resLock = make(chan struct{}, 1)
	k.st.queues = make([]chan kvJob, kvWorkers)
	for i := range k.st.queues {
		k.st.queues[i] = make(chan kvJob, kvQueue)
		s.wg.Add(1)
		go s.kvStoreWorker(k.st.queues[i])
	}
	s.wg.Add(1)
	go s.kvNotifier()
}

// kvStoreMessage takes a KindKV message on the read goroutine (under s.mu).
func (s *Server) kvStoreMessage(m inMsg) {
	req := s.kvCheck(m)
	if req == nil {
		return
	}
	switch req.Op {
	case kvGet, kvList, kvLeases:
		if !s.kvBehind(req) {
			s.kvAnswerRead(m.from, req)
			return
		}
	case kvWatch:
		if a := s.kvApp(req.App, true); a != nil {
			s.kvPoll(m.from, a, req, s.now())
		} else {
			s.kvRefuse(m.from, req.ID, kvLimit, fmt.Sprintf("too many apps (limit %d)", s.opts.MaxApps))
		}
		return
	}
	q := s.kv.st.queues[maphash.String(s.st.seed, req.App+"\x00"+req.Key)%kvWorkers]
	select {
	case q <- kvJob{from: m.from, req: req}:
	default:
		s.stats.skipped.Add(1)
		s.warn.Warn("mars: kv workers behind, dropping a request (the node sends again)", "from", m.from)
	}
}

// kvBehind reports whether the copy has not reached the revision a read
// must include.
func (s *Server) kvBehind(req *kvReq) bool {
	return req.KVID == s.kv.id && req.Rev > s.kv.rev
}

// kvAnswerRead answers a get or list from the state (under s.mu).
func (s *Server) kvAnswerRead(to netip.AddrPort, req *kvReq) {
	now := s.now()
	rep := kvReply{ID: req.ID, Rev: s.kvVisible()}
	a := s.kv.apps[req.App]
	switch {
	case req.Op == kvLeases && a != nil:
		rep.Entries, rep.More = a.listLeases(req.Key, req.After, now)
	case req.Op == kvList && a != nil:
		rep.Entries, rep.More = a.list(req.Key, req.After, req.Flags&kvFlagKeysOnly != 0, now)
	case req.Op == kvList, req.Op == kvLeases:
	case a != nil && a.live(req.Key, now) != nil:
		it := a.live(req.Key, now)
		rep.Entries = []kvEntry{{Key: it.key, Value: it.value, Rev: it.rev}}
	default:
		rep.Code, rep.Msg = kvNotFound, fmt.Sprintf("key %q not found", req.Key)
	}
	need := int64(0)
	if a != nil {
		need = a.lastRev
	}
	s.kvSend(to, &rep, need)
}

func (s *Server) kvStoreWorker(q chan kvJob) {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case j := <-q:
			s.kvStoreJob(j)
		}
	}
}

func (s *Server) kvStoreJob(j kvJob) {
	req := j.req
	ctx, cancel := context.WithTimeout(s.st.ctx, storeTimeout)
	defer cancel()
	var rep *kvReply
	var wait int64
	switch req.Op {
	case kvGet, kvList, kvLeases:
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && (!s.kvBehind(req) || s.kvWaitRev(req.Rev)) && !s.closed {
			s.kvAnswerRead(j.from, req)
		}
		return
	case kvPut, kvDel:
		rep, wait = s.kvStoreWrite(ctx, req)
	case kvClaim:
		rep, wait = s.kvStoreClaim(ctx, req)
	case kvRenew:
		rep = s.kvStoreRenew(ctx, req)
	case kvRelease:
		rep, wait = s.kvStoreRelease(ctx, req)
	}
	rep.ID = req.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if wait > s.kv.rev {
		// The reply goes once the copy holds the write (kvNotifier); the
		// worker goes on meanwhile.
		rep.KVID = s.kv.id
		s.kv.st.waiting = append(s.kv.st.waiting, heldKV{to: j.from, p: rep.append(nil), need: wait, at: s.now()})
		return
	}
	s.kvSend(j.from, rep, 0)
}

// kvFlushWaiting sends the replies whose writes the copy holds now, and
// drops those that waited longer than storeCatchUp (the node sends the
// write again; its result is found then) (under s.mu).
func (s *Server) kvFlushWaiting() {
	st := &s.kv.st
	if len(st.waiting) == 0 {
		return
	}
	now := s.now()
	st.waiting = s.sendHeld(st.waiting, s.kv.rev, func(h heldKV) bool {
		if now-h.at > int64(storeCatchUp) {
			s.warn.Warn("mars: the store copy is behind a write; the node sends it again", "rev", h.need)
			return true
		}
		return false
	})
}

// storeFailed starts the message of a reply whose store call failed (a
// timeout, etcd briefly unreachable): a client sends such a write again.
const storeFailed = "store: "

func unavailable(err error) *kvReply {
	return &kvReply{Code: kvUnavailable, Msg: storeFailed + err.Error()}
}

// kvResultLease returns the store lease result records hang on (a new one
// every kvResultRenew, each living kvResultTTL).
func (s *Server) kvResultLease(ctx context.Context, fresh bool) (int64, error) {
	st := &s.kv.st
	select {
	case st.resLock <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-st.resLock }()
	if st.resSID != 0 && !fresh && time.Since(st.resAt) < kvResultRenew {
		return st.resSID, nil
	}
	id, err := st.leaser.Grant(ctx, kvResultTTL)
	if err != nil {
		return 0, err
	}
	st.resSID, st.resAt = id, time.Now()
	return id, nil
}

func resultKey(req *kvReq) StoreKey {
	return StoreKey{App: req.App, Kind: StoreKVResult, Name: fmt.Sprintf("%s#%x#%d", req.Addr, req.Inc, req.Seq)}
}

// kvUpdate runs a write's transaction, taking a new result lease when the
// one it used expired.
func (s *Server) kvUpdate(ctx context.Context, keys []StoreKey, fn func(cur []StoreRecord, res int64) ([]StoreWrite, error)) (int64, error) {
	for try := 0; ; try++ {
		res, err := s.kvResultLease(ctx, try > 0)
		if err != nil {
			return 0, err
		}
		rev, err := s.st.store.Update(ctx, keys, func(cur []StoreRecord) ([]StoreWrite, error) { return fn(cur, res) })
		if errors.Is(err, ErrStoreLeaseGone) && try == 0 {
			continue
		}
		return rev, err
	}
}

// kvWriteIf is the one-round-trip write of a StoreCAS store: writes
// (given the result lease) if expect holds; ok false with cur otherwise,
// and handled false when the store has no StoreCAS.
func (s *Server) kvWriteIf(ctx context.Context, expect []StoreRecord, writes func(res int64) []StoreWrite) (handled, ok bool, cur []StoreRecord, rev int64, err error) {
	cas, is := s.st.store.(StoreCAS)
	if !is {
		return false, false, nil, 0, nil
	}
	for try := 0; ; try++ {
		res, err := s.kvResultLease(ctx, try > 0)
		if err != nil {
			return true, false, nil, 0, err
		}
		ok, cur, rev, err := cas.WriteIf(ctx, expect, writes(res))
		if errors.Is(err, ErrStoreLeaseGone) && try == 0 {
			continue
		}
		return true, ok, cur, rev, err
	}
}

// kvEarlier answers a write applied already (found by its result record),
// revoking the store lease this attempt took.
func (s *Server) kvEarlier(rec StoreRecord, sid int64) (*kvReply, int64) {
	s.kvRevoke(sid)
	rep := earlier(rec)
	return rep, rep.Rev
}

// earlier reads the result of a write applied already.
func earlier(rec StoreRecord) *kvReply {
	r, err := DecodeStoredKVResult(rec.Value)
	if err != nil {
		r = &StoredKVResult{}
	}
	return &kvReply{Code: r.Code, Rev: rec.Rev, TTL: r.TTL}
}

// kvStoreWrite applies a put or delete; it returns the reply and the
// revision the copy must hold first (0: none).
func (s *Server) kvStoreWrite(ctx context.Context, req *kvReq) (*kvReply, int64) {
	if s.kv.st.leaser == nil {
		return &kvReply{Code: kvUnavailable, Msg: "this store keeps no leases: no key-value writes"}, 0
	}
	if rep := s.kvStoreLimits(req); rep != nil {
		return rep, 0
	}
	var sid int64
	if req.Op == kvPut && req.TTL > 0 {
		var err error
		if sid, err = s.kv.st.leaser.Grant(ctx, time.Duration(req.TTL)*time.Millisecond); err != nil {
			return unavailable(err), 0
		}
	}
	key := StoreKey{App: req.App, Kind: StoreKVValue, Name: req.Key}
	if req.Op == kvPut {
		// One round trip: the write applies unless it did already (its
		// result exists) or, with CAS, the key moved.
		expect := []StoreRecord{{StoreKey: resultKey(req)}}
		if req.Flags&kvFlagCAS != 0 {
			expect = append(expect, StoreRecord{StoreKey: key, Rev: req.Rev})
		}
		handled, ok, cur, rev, err := s.kvWriteIf(ctx, expect, func(res int64) []StoreWrite {
			return []StoreWrite{{StoreKey: key, Value: req.Value, Lease: sid},
				{StoreKey: expect[0].StoreKey, Value: EncodeStoredKVResult(&StoredKVResult{}), Lease: res}}
		})
		switch {
		case !handled:
		case err != nil:
			s.kvRevoke(sid)
			return unavailable(err), 0
		case ok:
			return &kvReply{Rev: rev}, rev
		case cur[0].Rev != 0:
			return s.kvEarlier(cur[0], sid)
		default:
			s.kvRevoke(sid)
			s.kv.conflicts.Add(1)
			return &kvReply{Code: kvConflict, Rev: cur[1].Rev, Msg: fmt.Sprintf("key %q is at revision %d, not %d", req.Key, cur[1].Rev, req.Rev)}, 0
		}
	}
	var rep *kvReply
	rev, err := s.kvUpdate(ctx, []StoreKey{resultKey(req), key}, func(cur []StoreRecord, res int64) ([]StoreWrite, error) {
		rep = nil
		if cur[0].Rev != 0 {
			rep = earlier(cur[0])
			return nil, nil
		}
		if req.Flags&kvFlagCAS != 0 && cur[1].Rev != req.Rev {
			rep = &kvReply{Code: kvConflict, Rev: cur[1].Rev, Msg: fmt.Sprintf("key %q is at revision %d, not %d", req.Key, cur[1].Rev, req.Rev)}
			return nil, nil
		}
		w := StoreWrite{StoreKey: key, Value: req.Value, Lease: sid}
		if req.Op == kvDel {
			if cur[1].Rev == 0 {
				rep = &kvReply{Code: kvNotFound, Msg: fmt.Sprintf("key %q not found", req.Key)}
				return nil, nil
			}
			w = StoreWrite{StoreKey: key, Delete: true}
		}
		return []StoreWrite{w, {StoreKey: cur[0].StoreKey, Value: EncodeStoredKVResult(&StoredKVResult{}), Lease: res}}, nil
	})
	if err != nil {
		s.kvRevoke(sid)
		return unavailable(err), 0
	}
	if rep != nil {
		if rep.Code == kvConflict {
			s.kv.conflicts.Add(1)
		}
		s.kvRevoke(sid)
		if rep.Code == kvOK {
			return rep, rep.Rev
		}
		return rep, 0
	}
	return &kvReply{Rev: rev}, rev
}

// kvStoreLimits checks the app's totals against the copy (under s.mu).
func (s *Server) kvStoreLimits(req *kvReq) *kvReply {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.kv.apps[req.App]
	if a == nil || req.Op == kvDel {
		return nil
	}
	switch req.Op {
	case kvPut:
		if msg := s.kvPutLimit(a, req); msg != "" {
			return &kvReply{Code: kvLimit, Msg: msg}
		}
	case kvClaim:
		if a.leases[req.Key] == nil && len(a.leases) >= s.opts.MaxLeases {
			return &kvReply{Code: kvLimit, Msg: fmt.Sprintf("app %q holds the maximum of %d leases", a.name, s.opts.MaxLeases)}
		}
	}
	return nil
}

// kvRecord applies a record of the store to the copy (under s.mu, from
// applyRecord); it reports whether the record was the key-value store's.
func (s *Server) kvRecord(r StoreRecord) bool {
	s.kvAdvance(r.Rev) // records come in revision order
	switch r.Kind {
	case StoreKVResult:
		return true
	case StoreKVValue, StoreLeaseRec:
	default:
		return false
	}
	a := s.kvApp(r.App, !r.Deleted)
	if a == nil {
		return true
	}
	snap := r.Rev <= s.kv.st.base // loaded: part of the state, not a change
	switch {
	case r.Kind == StoreKVValue && r.Deleted:
		a.del(r.Name, r.Rev, false)
	case r.Kind == StoreKVValue:
		a.put(&kvItem{key: r.Name, value: r.Value, rev: r.Rev}, snap)
	case r.Deleted:
		delete(a.leases, r.Name)
		a.bump(r.Rev)
	default:
		l, err := DecodeStoredLease(r.Value)
		if err != nil {
			s.warn.Warn("mars: skipped a bad lease record in the store", "app", r.App, "lease", r.Name, "err", err)
			return true
		}
		at := time.UnixMilli(l.At)
		a.leases[r.Name] = &leaseEntry{key: r.Name, holder: l.Holder, inc: l.Inc, token: r.Rev,
			ttl: time.Duration(l.TTL) * time.Millisecond, granted: at, renewed: at, sid: l.SID}
		a.bump(r.Rev)
	}
	if !snap || len(s.kv.st.waiting) > 0 {
		if s.kv.dirty == nil {
			s.kv.dirty = make(map[string]bool)
		}
		s.kv.dirty[r.App] = true
		select {
		case s.kv.notify <- struct{}{}:
		default:
		}
	}
	return true
}

// kvAdvance notes that the copy holds every change up to rev.
func (s *Server) kvAdvance(rev int64) {
	if rev > s.kv.rev {
		s.kv.rev = rev
		close(s.kv.revCh)
		s.kv.revCh = make(chan struct{})
	}
}

// kvReload starts the copy again from a Load at rev (under s.mu, from
// installLoaded); held polls move to the new copy.
func (s *Server) kvReload(rev int64) {
	old := s.kv.apps
	s.kv.apps = make(map[string]*kvApp)
	s.kv.st.base, s.kv.floor = rev, rev
	for name, a := range old {
		if len(a.polls) > 0 {
			n := newKVApp(name, rev)
			n.polls = a.polls
			s.kv.apps[name] = n
		}
	}
	s.kv.rev = min(s.kv.rev, rev)
	s.kvAdvance(rev)
}

// kvWaitRev waits (under s.mu, which it releases meanwhile) until the
// copy holds revision want; false after storeCatchUp.
func (s *Server) kvWaitRev(want int64) bool {
	if s.kv.rev >= want {
		return true
	}
	t := time.NewTimer(storeCatchUp)
	defer t.Stop()
	for s.kv.rev < want {
		ch := s.kv.revCh
		s.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			s.mu.Lock()
			return s.kv.rev >= want
		case <-s.st.ctx.Done():
			s.mu.Lock()
			return false
		}
		s.mu.Lock()
	}
	return true
}

// kvNotifier answers the held polls of apps that changed, after the
// watch batch that changed them is applied whole.
func (s *Server) kvNotifier() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-s.kv.notify:
		}
		s.mu.Lock()
		if !s.closed {
			s.kvFlushWaiting()
			for name := range s.kv.dirty {
				if a := s.kv.apps[name]; a != nil {
					s.kvWake(a)
				}
			}
			clear(s.kv.dirty)
		}
		s.mu.Unlock()
	}
}
