package mars

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
)

// MARS's side of the key-value store and leases.
//
// A server without a Store handles KindKV on the transport's read
// goroutine under s.mu, like reports: reads are answered from memory,
// writes change it. Writes are exactly-once: each carries the node's
// write number (seq), and the node's session keeps the result of every
// write the node has not yet seen answered (base), so a write sent again
// after a lost reply or a MARS failover gets its first result and is not
// applied twice. With DataDir every change also goes to the data file
// (kv_wal.go), and a reply that shows a change (of its app) waits until
// the file holds it: no node ever sees a write MARS could lose.
//
// A replica over a Store hands writes to its workers (kv_store.go).

const (
	// kvPollMax bounds how long MARS holds a watch poll with no change.
	kvPollMax = 5 * time.Second
	// kvMaxPolls bounds the polls MARS holds per app.
	kvMaxPolls = 10_000
	// kvSessionIdle is how long MARS keeps a node's write results after
	// its last write.
	kvSessionIdle = 10 * time.Minute
	// kvMaxResults bounds the unanswered writes MARS remembers per node
	// (a client keeps fewer in flight: kvWindow).
	kvMaxResults = 4096
)

// kvServer is the key-value part of a Server (guarded by s.mu).
type kvServer struct {
	id        uint64 // the KV history: revisions and tokens refer to it
	rev       int64  // the latest revision the state holds
	durable   int64  // with DataDir: the data file holds every change up to here
	apps      map[string]*kvApp
	sessions  map[kvSessKey]*kvSession
	deadlines kvDeadlines
	held      []heldKV // with DataDir: replies waiting for the data file
	claimsAt  int64    // server clock before which claims are refused (restart hold)
	wal       *kvWAL
	// floor: an app without a kvApp has had no change after it (the start,
	// the data file's or the store's loaded revision, or an app forgotten
	// empty), so a new kvApp's history starts there.
	floor int64

	// with a Store (kv_store.go)
	st     kvStoreState
	revCh  chan struct{}   // closed and replaced when rev grows
	dirty  map[string]bool // apps whose polls may have news
	notify chan struct{}

	ops       [kvLeases + 1]atomic.Uint64
	conflicts atomic.Uint64
	refused   atomic.Uint64
}

type kvSessKey struct{ app, addr string }

// kvSession is what MARS remembers of one node's writes.
type kvSession struct {
	inc     uint64
	base    uint64
	results map[uint64]kvResult
	seen    int64 // server clock of the last write
}

// kvResult is the answer to one write.
type kvResult struct {
	Code   uint64
	Rev    int64
	Msg    string
	Holder string
	TTL    uint64
}

type heldKV struct {
	to   netip.AddrPort
	p    []byte
	need int64
	at   int64 // server clock when it was held
}

// kvPoll is a watch poll MARS holds until a change or its deadline.
type kvPoll struct {
	to     netip.AddrPort
	id     uint64
	prefix string
	from   int64
	until  int64
}

func (s *Server) kvInit() {
	k := &s.kv
	k.apps = make(map[string]*kvApp)
	k.sessions = make(map[kvSessKey]*kvSession)
	k.id = newIncarnation()
	k.rev = time.Now().UnixMicro()
	k.durable, k.floor = k.rev, k.rev
	if s.st != nil {
		// The store's revisions; its leases expire by its clock.
		k.id, k.rev = s.st.store.ID(), 0
		k.revCh, k.notify = make(chan struct{}), make(chan struct{}, 1)
	}
	if s.st == nil && s.opts.DataDir == "" {
		k.claimsAt = int64(s.opts.LeaseHold)
	}
}

// visible is the latest revision nodes may see.
func (s *Server) kvVisible() int64 {
	if s.kv.wal != nil {
		return s.kv.durable
	}
	return s.kv.rev
}

func (s *Server) kvApp(name string, create bool) *kvApp {
	a := s.kv.apps[name]
	if a == nil && create && len(s.kv.apps) < s.opts.MaxApps {
		a = newKVApp(name, s.kv.floor)
		s.kv.apps[name] = a
	}
	return a
}

// kvCheck decodes and checks a request; on failure it answers and
// returns nil.
func (s *Server) kvCheck(m inMsg) *kvReq {
	req, err := decodeKVReq(m.p)
	if err != nil {
		if id := peekKVID(m.p); id != 0 {
			s.kvRefuse(m.from, id, kvBadRequest, err.Error())
		} else {
			s.refuse(m.from, "", 0, CodeBadMessage, err.Error())
		}
		return nil
	}
	code, msg := s.kvCheckReq(m.from, req)
	if code != kvOK {
		s.kvRefuse(m.from, req.ID, code, msg)
		return nil
	}
	s.kv.ops[req.Op].Add(1)
	return req
}

// kvCheckReq is the checks of a request that need no state.
func (s *Server) kvCheckReq(from netip.AddrPort, req *kvReq) (uint64, string) {
	if err := CheckApp(req.App); err != nil {
		return kvBadApp, err.Error()
	}
	if req.App == "" && s.opts.RequireApp {
		return kvBadApp, "this MARS requires an app name"
	}
	if err := s.checkSender(from, req.Addr); err != nil {
		return kvBadRequest, err.Error()
	}
	var err error
	switch req.Op {
	case kvList, kvWatch, kvLeases:
		err = checkKVPrefix(req.Key)
	case kvPut, kvGet, kvDel, kvClaim, kvRenew, kvRelease:
		err = CheckKVKey(req.Key)
	default:
		return kvBadRequest, fmt.Sprintf("unknown kv operation %d", req.Op)
	}
	if err != nil {
		return kvBadKey, err.Error()
	}
	switch req.Op {
	case kvPut:
		if len(req.Value) > MaxKVValueLen {
			return kvLimit, fmt.Sprintf("value of %d bytes, limit %d", len(req.Value), MaxKVValueLen)
		}
		if req.TTL != 0 && time.Duration(req.TTL)*time.Millisecond < MinKVTTL {
			return kvBadRequest, fmt.Sprintf("TTL %v, at least %v", time.Duration(req.TTL)*time.Millisecond, MinKVTTL)
		}
	case kvClaim, kvRenew:
		ttl := time.Duration(req.TTL) * time.Millisecond
		if ttl < MinLeaseTTL || ttl > s.opts.MaxLeaseTTL {
			return kvBadRequest, fmt.Sprintf("lease TTL %v, want %v..%v", ttl, MinLeaseTTL, s.opts.MaxLeaseTTL)
		}
	}
	if (req.Op == kvPut || req.Op == kvDel || req.Op == kvClaim) && req.Seq == 0 {
		return kvBadRequest, "a write needs a sequence number"
	}
	return kvOK, ""
}

func (s *Server) kvRefuse(to netip.AddrPort, id, code uint64, msg string) {
	s.kv.refused.Add(1)
	s.warn.Warn("mars: refused a kv request", "from", to, "reason", msg)
	rep := kvReply{ID: id, Code: code, Msg: msg, KVID: s.kv.id}
	s.buf = rep.append(s.buf[:0])
	s.send(to, KindKVReply, s.buf)
}

// kvSend answers a request; with DataDir the answer waits until the data
// file holds need (the app's latest change).
func (s *Server) kvSend(to netip.AddrPort, rep *kvReply, need int64) {
	rep.KVID = s.kv.id
	s.buf = rep.append(s.buf[:0])
	if s.kv.wal != nil && need > s.kv.durable {
		s.kv.held = append(s.kv.held, heldKV{to: to, p: append([]byte(nil), s.buf...), need: need})
		s.kv.wal.kick()
		return
	}
	s.send(to, KindKVReply, s.buf)
}

// handleKV serves a request on a server without a Store (under s.mu).
func (s *Server) handleKV(m inMsg) {
	req := s.kvCheck(m)
	if req == nil {
		return
	}
	now := s.now()
	a := s.kvApp(req.App, true)
	if a == nil {
		s.kvRefuse(m.from, req.ID, kvLimit, fmt.Sprintf("too many apps (limit %d)", s.opts.MaxApps))
		return
	}
	rep := kvReply{ID: req.ID}
	before := a.lastRev
	switch req.Op {
	case kvGet, kvList, kvLeases:
		s.kvAnswerRead(m.from, req)
		return
	case kvWatch:
		s.kvPoll(m.from, a, req, now)
		return
	case kvRenew:
		s.kvRenew(a, req, &rep, now)
	case kvRelease:
		s.kvRelease(a, req.Key, req.Addr, req.Inc, req.Rev, now)
		rep.Rev = a.lastRev
	case kvPut, kvDel, kvClaim:
		sess := s.kvSession(req)
		res, ok := sess.results[req.Seq]
		switch {
		case ok:
		case req.Seq <= sess.base:
			return // answered long ago: a late copy
		default:
			res = s.kvWrite(a, req, now)
			if len(sess.results) < kvMaxResults {
				sess.results[req.Seq] = res
			}
		}
		sess.seen = now
		rep.Code, rep.Rev, rep.Msg, rep.Holder, rep.TTL = res.Code, res.Rev, res.Msg, res.Holder, res.TTL
	}
	if s.kv.wal == nil && a.lastRev != before {
		s.kvWake(a)
	}
	s.kvSend(m.from, &rep, a.lastRev)
}

// kvSession returns a node's write session, trimmed to base.
func (s *Server) kvSession(req *kvReq) *kvSession {
	k := kvSessKey{req.App, req.Addr}
	sess := s.kv.sessions[k]
	if sess == nil || sess.inc != req.Inc {
		sess = &kvSession{inc: req.Inc, base: req.Base, results: make(map[uint64]kvResult)}
		s.kv.sessions[k] = sess
	}
	if req.Base > sess.base {
		sess.base = req.Base
		for seq := range sess.results {
			if seq <= sess.base {
				delete(sess.results, seq)
			}
		}
	}
	return sess
}

func (s *Server) kvNextRev() int64 {
	s.kv.rev++
	return s.kv.rev
}

// kvWrite applies a put, delete or claim (without a Store).
func (s *Server) kvWrite(a *kvApp, req *kvReq, now int64) kvResult {
	if req.Op == kvClaim {
		return s.kvClaim(a, req, now)
	}
	it, conflict := s.kvCompare(a, req, now)
	if conflict != nil {
		return *conflict
	}
	if req.Op == kvDel {
		if it == nil {
			return kvResult{Code: kvNotFound, Msg: fmt.Sprintf("key %q not found", req.Key)}
		}
		rev := s.kvNextRev()
		a.del(req.Key, rev, false)
		s.kvLog(walRec{T: walDel, App: a.name, Key: req.Key, Rev: rev, Addr: req.Addr, Inc: req.Inc, Seq: req.Seq})
		return kvResult{Rev: rev}
	}
	if msg := s.kvPutLimit(a, req); msg != "" {
		return kvResult{Code: kvLimit, Msg: msg}
	}
	n := &kvItem{key: req.Key, value: append([]byte{}, req.Value...), rev: s.kvNextRev(), ttl: int64(req.TTL)}
	if req.TTL > 0 {
		d := time.Duration(req.TTL) * time.Millisecond
		n.expires, n.wall = now+int64(d), time.Now().Add(d).UnixMilli()
		s.kv.deadlines.add(kvDeadline{at: n.expires, app: a.name, key: n.key, rev: n.rev})
	}
	a.set(n)
	s.kvLog(walRec{T: walPut, App: a.name, Key: n.key, Val: n.value, Rev: n.rev, TTL: n.ttl, Wall: n.wall,
		Addr: req.Addr, Inc: req.Inc, Seq: req.Seq})
	return kvResult{Rev: n.rev}
}

// kvPutLimit says which limit of the app a put would pass ("" if none).
func (s *Server) kvPutLimit(a *kvApp, req *kvReq) string {
	old := a.get(req.Key)
	if old == nil && a.keys.Len() >= s.opts.MaxKVKeys {
		return fmt.Sprintf("app %q holds the maximum of %d keys", a.name, s.opts.MaxKVKeys)
	}
	grow := len(req.Key) + len(req.Value)
	if old != nil {
		grow -= len(old.key) + len(old.value)
	}
	if a.bytes+grow > s.opts.MaxKVBytes {
		return fmt.Sprintf("app %q would hold more than %d bytes of keys and values", a.name, s.opts.MaxKVBytes)
	}
	return ""
}

// kvCompare returns the key a put or delete finds, and the conflict when
// its CAS revision is another.
func (s *Server) kvCompare(a *kvApp, req *kvReq, now int64) (*kvItem, *kvResult) {
	it := a.live(req.Key, now)
	cur := int64(0)
	if it != nil {
		cur = it.rev
	}
	if req.Flags&kvFlagCAS != 0 && cur != req.Rev {
		s.kv.conflicts.Add(1)
		return it, &kvResult{Code: kvConflict, Rev: cur, Msg: fmt.Sprintf("key %q is at revision %d, not %d", req.Key, cur, req.Rev)}
	}
	return it, nil
}

// kvLive reports whether a node may claim: MARS lists it online (not
// draining, not offline, not a guest).
func (s *Server) kvLive(app, addr string, inc uint64) bool {
	na := s.apps[app]
	if na == nil {
		return false
	}
	e := na.nodes[addr]
	return e != nil && e.inc == inc && e.alive && e.life != StateDraining
}

func (s *Server) kvClaim(a *kvApp, req *kvReq, now int64) kvResult {
	if !s.kvLive(req.App, req.Addr, req.Inc) {
		return kvResult{Code: kvNotLive, Msg: fmt.Sprintf("node %s is not listed online (draining, offline or a guest): it may not claim", req.Addr)}
	}
	if now < s.kv.claimsAt {
		return kvResult{Code: kvUnavailable, Msg: fmt.Sprintf("MARS started %v ago without a data file; claims wait %v for leases of its previous run to expire",
			time.Duration(now).Round(time.Millisecond), s.opts.LeaseHold)}
	}
	if l := a.liveLease(req.Key, now); l != nil && (l.holder != req.Addr || l.inc != req.Inc) {
		return kvResult{Code: kvHeld, Holder: l.holder, Rev: l.token, Msg: fmt.Sprintf("lease %q is held by %s", req.Key, l.holder)}
	}
	if a.leases[req.Key] == nil && len(a.leases) >= s.opts.MaxLeases {
		return kvResult{Code: kvLimit, Msg: fmt.Sprintf("app %q holds the maximum of %d leases", a.name, s.opts.MaxLeases)}
	}
	ttl := time.Duration(req.TTL) * time.Millisecond
	l := s.kvGrant(a, req.Key, req.Addr, req.Inc, s.kvNextRev(), ttl, now)
	s.kvLog(walRec{T: walGrant, App: a.name, Key: l.key, Rev: l.token, TTL: int64(req.TTL), Addr: l.holder, Inc: l.inc, Seq: req.Seq})
	return kvResult{Rev: l.token, TTL: req.TTL}
}

// kvGrant installs a lease (without a Store).
func (s *Server) kvGrant(a *kvApp, key, holder string, inc uint64, token int64, ttl time.Duration, now int64) *leaseEntry {
	wall := time.Now()
	l := &leaseEntry{key: key, holder: holder, inc: inc, token: token, ttl: ttl, expires: now + int64(ttl), granted: wall, renewed: wall}
	a.leases[key] = l
	a.bump(token)
	s.kv.deadlines.add(kvDeadline{at: l.expires, app: a.name, key: key, rev: token, lease: true})
	return l
}

// kvRenew extends a lease (without a Store). A lease of another KV
// history (MARS restarted without a data file) is granted again with its
// token if the key is free: its holder keeps it.
func (s *Server) kvRenew(a *kvApp, req *kvReq, rep *kvReply, now int64) {
	ttl := time.Duration(req.TTL) * time.Millisecond
	l := a.liveLease(req.Key, now)
	switch {
	case l != nil && l.token == req.Rev && l.holder == req.Addr && l.inc == req.Inc:
		l.expires, l.ttl, l.renewed = now+int64(ttl), ttl, time.Now()
		s.kv.deadlines.add(kvDeadline{at: l.expires, app: a.name, key: l.key, rev: l.token, lease: true})
	case l == nil && req.KVID != s.kv.id && a.leases[req.Key] == nil && !s.kvLive(req.App, req.Addr, req.Inc):
		// The holder has not registered with this MARS yet: it renews
		// again soon.
		rep.Code, rep.Msg = kvUnavailable, fmt.Sprintf("node %s is not registered with this MARS yet", req.Addr)
		return
	case l == nil && req.KVID != s.kv.id && a.leases[req.Key] == nil:
		l = s.kvGrant(a, req.Key, req.Addr, req.Inc, req.Rev, ttl, now)
		s.kvLog(walRec{T: walGrant, App: a.name, Key: l.key, Rev: l.token, TTL: int64(req.TTL), Addr: l.holder, Inc: l.inc})
	default:
		rep.Code, rep.Msg = kvLeaseGone, fmt.Sprintf("lease %q with token %d is not held by %s", req.Key, req.Rev, req.Addr)
		return
	}
	rep.Rev, rep.TTL = l.token, req.TTL
}

// kvRelease frees a lease held with token (without a Store); releasing
// one that is gone is not an error.
func (s *Server) kvRelease(a *kvApp, key, holder string, inc uint64, token int64, now int64) {
	l := a.leases[key]
	if l == nil || l.token != token || l.holder != holder || l.inc != inc {
		return
	}
	delete(a.leases, key)
	rev := s.kvNextRev()
	a.bump(rev)
	s.kvLog(walRec{T: walRelease, App: a.name, Key: key, Rev: rev})
}

// kvPoll answers a watch poll with the changes after req.Rev, or holds it
// until there are some or its time is up.
func (s *Server) kvPoll(to netip.AddrPort, a *kvApp, req *kvReq, now int64) {
	vis := s.kvVisible()
	rep := kvReply{ID: req.ID, Rev: vis}
	switch {
	case req.Rev == 0:
	case req.KVID != 0 && req.KVID != s.kv.id:
		rep.Code, rep.Msg = kvCompacted, "MARS's key-value history is another one (it restarted without a data file, or the store was reset)"
	case req.Rev < a.horizon:
		rep.Code, rep.Msg = kvCompacted, fmt.Sprintf("history after revision %d is gone (it starts after %d)", req.Rev, a.horizon)
	default:
		rep.Entries, rep.Rev, rep.More = a.since(req.Key, req.Rev, vis)
		if len(rep.Entries) == 0 {
			s.kvPark(a, &kvPoll{to: to, id: req.ID, prefix: req.Key, from: req.Rev,
				until: now + int64(min(time.Duration(req.TTL)*time.Millisecond, kvPollMax))})
			return
		}
	}
	s.kvSend(to, &rep, 0)
}

func (s *Server) kvPark(a *kvApp, p *kvPoll) {
	for i, q := range a.polls {
		if q.to == p.to && q.id == p.id {
			a.polls[i] = p // sent again
			return
		}
	}
	if len(a.polls) >= kvMaxPolls {
		s.kvSend(p.to, &kvReply{ID: p.id, Code: kvLimit, Msg: fmt.Sprintf("app %q has %d watch polls waiting, the limit", a.name, kvMaxPolls)}, 0)
		return
	}
	a.polls = append(a.polls, p)
}

// kvWake answers the held polls of an app that have news.
func (s *Server) kvWake(a *kvApp) {
	if len(a.polls) == 0 {
		return
	}
	vis := s.kvVisible()
	keep := a.polls[:0]
	for _, p := range a.polls {
		rep := kvReply{ID: p.id}
		rep.Entries, rep.Rev, rep.More = a.since(p.prefix, p.from, vis)
		if p.from < a.horizon {
			rep = kvReply{ID: p.id, Code: kvCompacted, Rev: vis, Msg: fmt.Sprintf("history after revision %d is gone", p.from)}
		} else if len(rep.Entries) == 0 {
			keep = append(keep, p)
			continue
		}
		s.kvSend(p.to, &rep, 0)
	}
	clear(a.polls[len(keep):])
	a.polls = keep
}

// sendHeld sends the held replies whose need is at most rev, drops those
// drop says to, and returns the rest (in place).
func (s *Server) sendHeld(held []heldKV, rev int64, drop func(heldKV) bool) []heldKV {
	keep := held[:0]
	for _, h := range held {
		switch {
		case h.need <= rev:
			s.send(h.to, KindKVReply, h.p)
		case drop != nil && drop(h):
		default:
			keep = append(keep, h)
		}
	}
	clear(held[len(keep):])
	return keep
}

// kvTick expires polls, TTLs and leases, and forgets idle sessions
// (under s.mu, from the server's run loop).
func (s *Server) kvTick() {
	now := s.now()
	vis := s.kvVisible()
	for name, a := range s.kv.apps {
		keep := a.polls[:0]
		for _, p := range a.polls {
			if now < p.until {
				keep = append(keep, p)
				continue
			}
			s.kvSend(p.to, &kvReply{ID: p.id, Rev: vis}, 0)
		}
		clear(a.polls[len(keep):])
		a.polls = keep
		if s.st == nil && a.empty() && len(s.kv.apps) > s.opts.MaxApps/2 {
			s.kv.floor = max(s.kv.floor, a.lastRev)
			delete(s.kv.apps, name)
		}
	}
	if s.st != nil {
		s.kvFlushWaiting()
		return // the store expires keys and leases
	}
	changed := map[*kvApp]bool{}
	for _, d := range s.kv.deadlines.due(now) {
		a := s.kv.apps[d.app]
		if a == nil {
			continue
		}
		if d.lease {
			l := a.leases[d.key]
			switch {
			case l == nil || l.token != d.rev:
			case l.expires > now:
				s.kv.deadlines.add(kvDeadline{at: l.expires, app: d.app, key: d.key, rev: d.rev, lease: true})
			default:
				delete(a.leases, d.key)
				rev := s.kvNextRev()
				a.bump(rev)
				s.kvLog(walRec{T: walRelease, App: a.name, Key: d.key, Rev: rev})
				changed[a] = true
			}
			continue
		}
		if it := a.get(d.key); it != nil && it.rev == d.rev && it.expires != 0 && it.expires <= now {
			rev := s.kvNextRev()
			a.del(d.key, rev, true)
			s.kvLog(walRec{T: walDel, App: a.name, Key: d.key, Rev: rev, Expired: true})
			changed[a] = true
		}
	}
	if s.kv.wal == nil {
		for a := range changed {
			s.kvWake(a)
		}
	}
	for k, sess := range s.kv.sessions {
		if now-sess.seen > int64(kvSessionIdle) {
			delete(s.kv.sessions, k)
		}
	}
}

// kvLog writes a change to the data file (with DataDir).
func (s *Server) kvLog(r walRec) {
	if s.kv.wal != nil {
		s.kv.wal.add(&r, r.Rev)
	}
}

// kvDurable is called (under s.mu) once the data file holds every change
// up to rev: held replies go out and polls see the changes.
func (s *Server) kvDurable(rev int64) {
	if rev <= s.kv.durable {
		return
	}
	s.kv.durable = rev
	s.kv.held = s.sendHeld(s.kv.held, rev, nil)
	for _, a := range s.kv.apps {
		s.kvWake(a)
	}
}
