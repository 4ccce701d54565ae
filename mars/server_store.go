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
// they are sent again after a failover. A mark outside any session
// (StoreAck) holds the Ack too, for a node whose record vanished. The reply waits until the copy has
// caught up with the write. A heartbeat writes nothing.
//
// Liveness: the replica that serves a node (the record's Owner) writes its
// record with its session, so the record expires when that replica dies
// without a successor. It marks the node offline after OfflineAfter +
// min(2 s, OfflineAfter) of silence (the node may have moved to a replica
// that has not taken it over yet) and removes it after RemoveAfter. A node
// that moves to another replica re-owns its record at its first report
// there. Silence counts from the last failed store call at the earliest:
// while the store is away, reports pile up unanswered and moved nodes
// cannot be taken over, so no node is listed offline or removed for a
// silence the replica itself caused.
//
// Store calls run on the server's workers (reports and leaves, hashed by
// node so one node's messages stay in order), on its sweeper and on its
// takeover loop; never on the transport's read goroutine (which answers the
// heartbeats of nodes with nothing queued from the copy), never under s.mu.

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
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
	storeNudge      = 50 * time.Millisecond // how long waitRev waits for events before it asks for progress
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
	nudge  chan struct{} // asks progressLoop for a Store.Progress (one pending at most)
	// keyLocks serialise this replica's writes of one shared key (striped):
	// a hot key written from many nodes would otherwise make the workers'
	// optimistic transactions conflict and retry; only other replicas'
	// writes still conflict.
	keyLocks [64]sync.Mutex
	// under s.mu:
	failedAt int64         // server clock of the last failed store call (storeFailed)
	rev      int64         // the copy holds every change up to here
	revCh    chan struct{} // closed and replaced when rev grows
	taking   map[StoreKey]bool
	pending  map[string]int // messages queued per node
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
	st.nudge = make(chan struct{}, 1)
	s.wg.Add(3)
	go s.storeWatch()
	go s.takeoverLoop()
	go s.progressLoop()
	return nil
}

// installLoaded replaces the copy with what Load returned, at revision rev.
// Nodes whose view is older get a full snapshot (the horizon is rev).
func (s *Server) installLoaded(recs []StoreRecord, rev int64) {
	s.kvReload(rev)
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
		a.onState = s.stateChanged
		s.apps[name] = a
	}
	return a
}

// applyRecord applies one record (loaded or watched) to the copy.
func (s *Server) applyRecord(r StoreRecord, now int64) {
	if s.kvRecord(r) {
		return // the key-value store's (kv_store.go)
	}
	if r.Kind == StoreAck {
		return // read by storeWrite in its transactions only
	}
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
			a.removeNodeAt(r.Name, goneRemoved, v, now)
			return
		}
		n, err := DecodeStoredNode(r.Value)
		if err != nil {
			s.warn.Warn("mars: skipped a bad node record in the store", "app", r.App, "node", r.Name, "err", err)
			return
		}
		if n.Left {
			if e != nil && r.Kind == StoreNode && e.inc == n.Inc {
				s.nodeRemoved(a, e, now)
				a.removeNodeAt(r.Name, goneLeft, v, now)
			} else if e != nil && e.inc == n.Inc {
				delete(m, r.Name)
			}
			return
		}
		info := n.info()
		visible := true // what nodes see changed (not only Ack or Owner)
		if e == nil {
			e = &nodeEntry{addr: r.Name, lastSeen: now}
			m[r.Name] = e
		} else {
			visible = e.inc != n.Inc || e.alive != n.Alive || e.life != n.life() || !e.info.equal(&info)
			if e.owner != s.st.owner && n.Owner == s.st.owner {
				e.lastSeen = now // this replica takes over: its silence counts from now
			}
		}
		e.inc, e.prevInc, e.info, e.alive, e.ack, e.owner = n.Inc, n.PrevInc, info, n.Alive, n.Ack, n.Owner
		e.life = n.life()
		if r.Kind == StoreNode && visible {
			a.nodeChangedAt(e, v)
		}
	}
}

// errStoreOrder ends a watch that delivered a change at or below a
// revision it had already reported.
var errStoreOrder = errors.New("the store delivered a change older than a revision it reported complete")

// storeWatch keeps the copy current; when the watch fails it loads the
// whole state again (or, if that fails, watches again from where the copy
// is).
//
// Versions handed to nodes are the copy's revision, so a change the copy
// receives at or below it would never reach a node whose view is past it.
// A Store promises that cannot happen; if it does anyway, the copy is
// loaded again, at a revision past every version handed out (a
// Store.Progress first moves the store on): every app's horizon rises past
// them, so every node gets a full snapshot.
func (s *Server) storeWatch() {
	defer s.wg.Done()
	st := s.st
	mustLoad, bump := false, false
	for {
		if !mustLoad {
			err := s.watchOnce()
			if st.ctx.Err() != nil {
				return
			}
			s.storeFailed()
			s.log.Warn("mars: store watch ended; loading the state again", "err", err)
			mustLoad = errors.Is(err, errStoreOrder)
			bump = mustLoad
			if !mustLoad && !s.storePause() {
				return
			}
		}
		ctx, cancel := context.WithTimeout(st.ctx, storeTimeout)
		var err error
		if bump {
			err = st.store.Progress(ctx)
		}
		var recs []StoreRecord
		var rev int64
		if err == nil {
			recs, rev, err = st.store.Load(ctx)
		}
		cancel()
		if err != nil {
			s.storeFailed()
			s.log.Warn("mars: cannot load the store", "err", err)
			if mustLoad && !s.storePause() { // the copy is not to be watched on
				return
			}
			continue
		}
		s.mu.Lock()
		s.installLoaded(recs, rev)
		s.mu.Unlock()
		mustLoad, bump = false, false
	}
}

// storePause waits a second before the store is asked again; false when
// the server stops meanwhile.
func (s *Server) storePause() bool {
	select {
	case <-s.st.ctx.Done():
		return false
	case <-time.After(time.Second):
		return true
	}
}

// watchOnce applies the store's changes to the copy until the watch ends,
// and returns why it ended.
func (s *Server) watchOnce() error {
	st := s.st
	s.mu.Lock()
	from := st.rev
	s.mu.Unlock()
	ctx, cancel := context.WithCancelCause(st.ctx)
	defer cancel(nil)
	err := st.store.Watch(ctx, from, func(changes []StoreRecord, rev int64) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		now := s.now()
		for _, r := range changes {
			if r.Rev <= st.rev {
				cancel(fmt.Errorf("%w: %v %q at %d, after %d", errStoreOrder, string(r.Kind), r.Name, r.Rev, st.rev))
				return
			}
			s.applyRecord(r, now)
		}
		s.advance(rev)
	})
	if c := context.Cause(ctx); errors.Is(c, errStoreOrder) {
		return c
	}
	return err
}

// waitRev waits (under s.mu, which it releases meanwhile) until the copy
// holds revision want; false on timeout. The change at want, if it is one
// under the store, reaches the watch by itself; when none has come after
// storeNudge (want was a revision of something else, such as a read's), it
// asks the store for progress.
func (s *Server) waitRev(want int64) bool {
	st := s.st
	if st.rev >= want {
		return true
	}
	t := time.NewTimer(storeCatchUp)
	defer t.Stop()
	nudge := time.NewTimer(storeNudge)
	defer nudge.Stop()
	for st.rev < want {
		ch := st.revCh
		s.mu.Unlock()
		select {
		case <-ch:
		case <-nudge.C:
			// A request pending or made now is served after this moment,
			// so its progress covers want.
			select {
			case st.nudge <- struct{}{}:
			default:
			}
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

// storeFailed notes that a store call failed (not under s.mu).
func (s *Server) storeFailed() {
	s.mu.Lock()
	s.st.failedAt = s.now()
	s.mu.Unlock()
}

// progressLoop calls Store.Progress for waitRev, one call at a time: the
// requests of every waiting report share it.
func (s *Server) progressLoop() {
	defer s.wg.Done()
	st := s.st
	for {
		select {
		case <-st.ctx.Done():
			return
		case <-st.nudge:
		}
		ctx, cancel := context.WithTimeout(st.ctx, storeCatchUp)
		if err := st.store.Progress(ctx); err != nil && st.ctx.Err() == nil {
			s.storeFailed()
			s.warn.Warn("mars: store progress request failed", "err", err)
		}
		cancel()
	}
}
