package mars

import (
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The restart part of TestScale (MARS_SCALE_RESTART): every simulated node
// keeps the view it had, as a real node does, and reconciles it with the
// new MARS by digest (digest.go). A simulated node cannot hold a 10,000-node
// View of its own, so they share one: the view of sims[0], kept in full by
// simObserver, is the base every node kept, and each node holds only its
// differences from it (simRestart.overlay), from which it computes its
// digest. At the end every node proves its view equal to MARS's: it sends
// its digest as if its view came from the old MARS, and the new MARS must
// answer that no bucket differs.

// simObserver keeps sims[0]'s view in a real View.
type simObserver struct {
	mu   sync.Mutex
	view *View
	head syncHead
	part *syncBody
}

// take applies one sync message to the view (parts are gathered first).
func (o *simObserver) take(h syncHead, r reader, fields int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.view == nil {
		return
	}
	if h.Part == 0 {
		o.head, o.part = h, &syncBody{}
	} else if o.part == nil || h.Part != o.head.Part+1 {
		o.part = nil
		return
	}
	o.head.Part = h.Part
	if decodeSyncBody(&r, fields, o.part) != nil {
		o.part = nil
		return
	}
	if h.Flags&syncMore != 0 {
		return
	}
	h.From = o.head.From
	o.view.apply(&h, o.part, false, time.Now())
	o.part = nil
}

// entryH is one entry of a view as a digest counts it; hash 0: removed.
type entryH struct{ nameHash, hash uint64 }

// simBase is the view every node kept through the restart.
type simBase struct {
	oldInc   uint64
	keys     []kv              // the shared data (a registration's seed)
	syncedAt int64             // when the view was last synced (Unix ms)
	entries  map[string]entryH // "n"+address, "k"+key
	dig      digest
	byBucket [][]string
}

func newSimBase(v *View) *simBase {
	v.mu.RLock()
	defer v.mu.RUnlock()
	b := &simBase{oldInc: v.marsInc, syncedAt: v.syncedAt.UnixMilli(), entries: make(map[string]entryH, len(v.nodes)+len(v.keys))}
	nb := digestBuckets(len(v.nodes) + len(v.keys))
	b.dig, b.byBucket = newDigest(nb), make([][]string, nb)
	put := func(name string, e entryH) {
		b.entries[name] = e
		b.dig.add(e.nameHash, e.hash)
		b.byBucket[bucketOf(e.nameHash, nb)] = append(b.byBucket[bucketOf(e.nameHash, nb)], name)
	}
	for a, n := range v.nodes {
		put("n"+a, entryH{nodeNameHash(a), nonZero(nodeEntryHash(appendRecord(nil, &n.rec), n.mars))})
	}
	for k, val := range v.keys {
		put("k"+k, entryH{keyNameHash(k), keyEntryHash(k, val)})
		b.keys = append(b.keys, kv{k, val})
	}
	return b
}

// simRestart is a simulated node's part of a restart (guarded by its mu).
type simRestart struct {
	dead       bool // died while MARS was down: sends nothing
	seeded     bool // its registration carried the view's shared data
	regSoon    bool // a registration is scheduled
	askSoon    bool // a report after a wait is scheduled
	regOps     []op // a change made while MARS was down, sent with the registration
	reconciled bool
	at         time.Time
	overlay    map[string]entryH // the node's differences from the base
	verify     int               // 1: asked, 2: MARS found the view equal, 3: it did not
}

// digestFor adds the node's digest to a report while it has not
// reconciled, and while it verifies (then as if its view came from the
// old MARS).
func (b *simBase) digestFor(s *simNode, r *report) {
	switch {
	case s.rs.verify == 1:
		r.MarsInc = b.oldInc
	case s.rs.reconciled:
		return
	}
	if r.Info != nil && r.From == 0 && !s.rs.seeded { // a registration: seed the new MARS, as a real node does
		s.rs.seeded = true
		r.Seed, r.SeedAt = b.keys, b.syncedAt
	}
	d := digest{total: b.dig.total, buckets: slices.Clone(b.dig.buckets)}
	for name, e := range s.rs.overlay {
		if old, ok := b.entries[name]; ok {
			d.add(old.nameHash, -old.hash)
		}
		if e.hash != 0 {
			d.add(e.nameHash, e.hash)
		}
	}
	r.Digest = &d
}

func (b *simBase) put(s *simNode, name string, e entryH) {
	if old, ok := b.entries[name]; ok && old.hash == e.hash {
		delete(s.rs.overlay, name)
		return
	}
	s.rs.overlay[name] = e
}

func (b *simBase) remove(s *simNode, name string, nameHash uint64) {
	if _, ok := b.entries[name]; ok {
		s.rs.overlay[name] = entryH{nameHash: nameHash}
		return
	}
	delete(s.rs.overlay, name)
}

// onSync applies a sync to the node's differences (under s.mu, before its
// version moves); it reports whether the sync answered a verification.
func (b *simBase) onSync(s *simNode, h *syncHead, body *syncBody) bool {
	full := h.Flags&syncFull != 0
	if s.rs.verify == 1 {
		if !full {
			return false
		}
		s.rs.verify = 3
		if h.Flags&syncBuckets != 0 && body != nil && len(body.Buckets) == 0 {
			s.rs.verify = 2
		}
		return true
	}
	if !full && !(s.rs.reconciled && h.MarsInc == s.marsInc && h.From <= s.ver && s.ver <= h.To) {
		return false
	}
	if h.Flags&syncBuckets != 0 && s.rs.reconciled {
		return true // as View.apply: an answer to a digest of the view before it reconciled
	}
	if s.rs.overlay == nil {
		s.rs.overlay = map[string]entryH{}
	}
	if full {
		listed := map[string]bool{}
		if body != nil {
			for _, n := range body.Nodes {
				listed["n"+n.Addr] = true
			}
			for _, k := range body.Keys {
				listed["k"+k.Key] = true
			}
		}
		drop := func(name string, e entryH) {
			if !listed[name] {
				b.remove(s, name, e.nameHash)
			}
		}
		if h.Flags&syncBuckets != 0 && body != nil && body.NB == len(b.dig.buckets) {
			for _, i := range body.Buckets {
				for _, name := range b.byBucket[i] {
					drop(name, b.entries[name])
				}
				for name, e := range s.rs.overlay {
					if bucketOf(e.nameHash, body.NB) == i {
						drop(name, e)
					}
				}
			}
		} else { // a full snapshot: whatever it does not list is gone
			for name, e := range b.entries {
				drop(name, e)
			}
			for name, e := range s.rs.overlay {
				drop(name, e)
			}
		}
		s.rs.reconciled, s.rs.at = true, time.Now()
	}
	if body == nil {
		return false
	}
	for i, n := range body.Nodes {
		st := marsState(&n)
		if i < len(body.States) {
			st = body.States[i]
		}
		b.put(s, "n"+n.Addr, entryH{nodeNameHash(n.Addr), nonZero(nodeEntryHash(appendRecord(nil, &n), st))})
	}
	for _, a := range body.Gone {
		b.remove(s, "n"+a, nodeNameHash(a))
	}
	for _, k := range body.Keys {
		b.put(s, "k"+k.Key, entryH{keyNameHash(k.Key), keyEntryHash(k.Key, k.Val)})
	}
	for _, k := range body.Dropped {
		b.remove(s, "k"+k, keyNameHash(k))
	}
	return false
}

// scaleRestart measures a MARS restart (MARS_SCALE_RESTART set): the
// mars-server process is SIGKILLed; while it is down one node dies, one
// changes its type and one sets a shared key (both sent with their
// registration); MARS starts again on its port at once. Every node keeps
// its view, re-registers within 500 ms of learning of the new MARS, and
// reconciles by digest. Reported: the time until every node is registered
// again (re-listed) and has reconciled its view, the new process's CPU, the
// bytes each way, and whether every view then equals MARS's.
func scaleRestart(t *testing.T, c *simCluster, n int, proc **marsProc, port int, args []string) {
	// The base: every node is at the observer's version.
	deadline := time.Now().Add(time.Minute)
	for {
		_, ver := c.obs.view.Version()
		at := 0
		for _, s := range c.sims {
			s.mu.Lock()
			if s.ver == ver {
				at++
			}
			s.mu.Unlock()
		}
		if at == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart: only %d of %d nodes at the observer's version", at, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	base := newSimBase(c.obs.view)
	if got := len(base.entries); got < n {
		t.Fatalf("restart: the base view holds %d entries for %d nodes", got, n)
	}
	live := c.sims[:n-1]
	dead, changed, writer := c.sims[n-1], c.sims[n/2], c.sims[n/3]
	rb0, sb0, f0, fb0 := c.stats.reportBytes.Load(), c.stats.syncBytes.Load(), c.stats.fulls.Load(), c.stats.fullBytes.Load()
	bk0, bkb0, w0 := c.stats.buckets.Load(), c.stats.bucketBytes.Load(), c.stats.waits.Load()
	(*proc).signal(syscall.SIGKILL)
	for _, s := range c.sims {
		s.mu.Lock()
		s.registered, s.rs = false, simRestart{}
		s.mu.Unlock()
	}
	dead.mu.Lock()
	dead.rs.dead = true
	dead.mu.Unlock()
	changed.mu.Lock()
	changed.info.Type = "changed"
	changed.mu.Unlock()
	writer.mu.Lock()
	writer.rs.regOps = []op{{Key: "outage", Val: 7}}
	writer.mu.Unlock()
	c.base.Store(base)

	*proc = startMarsProc(t, port, args...)
	restarted := time.Now()
	pid := (*proc).cmd.Process.Pid
	cpu0 := procCPU(t, pid)
	deadline = restarted.Add(3 * time.Minute)
	var half, relisted, reconciled time.Duration
	lastLog := time.Now()
	count := func() (reg, rec int) {
		for _, s := range live {
			s.mu.Lock()
			if s.registered {
				reg++
			}
			if s.rs.reconciled {
				rec++
			}
			s.mu.Unlock()
		}
		return reg, rec
	}
	for {
		reg, rec := count()
		if half == 0 && reg >= len(live)/2 {
			half = time.Since(restarted)
		}
		if relisted == 0 && reg == len(live) {
			relisted = time.Since(restarted)
		}
		if rec == len(live) {
			reconciled = time.Since(restarted)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("restart: only %d of %d nodes registered again, %d reconciled, in 3 minutes (figures below are for those 3 minutes)", reg, len(live), rec)
			break
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			t.Logf("restart: %v: %d registered again, %d reconciled", time.Since(restarted).Round(time.Second), reg, rec)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu := procCPU(t, pid) - cpu0
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	up, down := c.stats.reportBytes.Load()-rb0, c.stats.syncBytes.Load()-sb0
	fulls, fullBytes := c.stats.fulls.Load()-f0, c.stats.fullBytes.Load()-fb0
	bks, bkBytes, waits := c.stats.buckets.Load()-bk0, c.stats.bucketBytes.Load()-bkb0, c.stats.waits.Load()-w0
	var recAt []time.Duration
	for _, s := range live {
		s.mu.Lock()
		if s.rs.reconciled {
			recAt = append(recAt, s.rs.at.Sub(restarted))
		}
		s.mu.Unlock()
	}
	slices.Sort(recAt)
	pct := func(q float64) time.Duration {
		if len(recAt) == 0 {
			return 0
		}
		return recAt[min(len(recAt)-1, int(q*float64(len(recAt))))].Round(time.Millisecond)
	}

	// Every view must equal MARS's once no version moves any more.
	equal, differ := scaleVerify(t, c, live)
	kind := "memory"
	if slices.Contains(args, "-data") {
		kind = "-data"
	}
	t.Logf("SUMMARY restart (%s): nodes=%d half re-listed %v, all re-listed %v, all views reconciled %v (p50 %v, p99 %v) after the new process listened; "+
		"new MARS CPU %.2f s, RSS %s; down %.1f MB (%.2f %% of the 3.56 GB one snapshot per node cost at 10,000), up %.1f MB; "+
		"%d full snapshots (%.1f MB), %d bucket syncs (%.1f MB, mean %d bytes), %d waits; views equal to MARS's: %d of %d",
		kind, n, half.Round(time.Millisecond), relisted.Round(time.Millisecond), reconciled.Round(time.Millisecond),
		pct(0.5), pct(0.99), cpu, procRSS(t, pid), mb(down), 100*float64(down)/3.56e9, mb(up),
		fulls, mb(fullBytes), bks, mb(bkBytes), bkBytes/max(bks, 1), waits, equal, len(live))
	if differ > 0 || equal != len(live) {
		t.Errorf("restart: %d views differ from MARS's, %d equal, of %d", differ, equal, len(live))
	}
}

// scaleVerify waits until every live node is at one version for a second,
// then has each prove its view equal to MARS's (see the file comment).
func scaleVerify(t *testing.T, c *simCluster, live []*simNode) (equal, differ int) {
	deadline := time.Now().Add(time.Minute)
	var same time.Time
	for {
		vers := map[uint64]int{}
		for _, s := range live {
			s.mu.Lock()
			vers[s.ver]++
			s.mu.Unlock()
		}
		switch {
		case len(vers) != 1:
			same = time.Time{}
		case same.IsZero():
			same = time.Now()
		}
		if !same.IsZero() && time.Since(same) > time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("verify: the nodes' versions did not settle in a minute: %d versions", len(vers))
			return 0, len(live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range live {
		s.mu.Lock()
		s.rs.verify = 1
		s.mu.Unlock()
		c.report(s, nil)
	}
	deadline = time.Now().Add(time.Minute)
	for {
		equal, differ = 0, 0
		for _, s := range live {
			s.mu.Lock()
			switch s.rs.verify {
			case 2:
				equal++
			case 3:
				differ++
			}
			s.mu.Unlock()
		}
		if equal+differ == len(live) || time.Now().After(deadline) {
			return equal, differ
		}
		time.Sleep(20 * time.Millisecond)
	}
}
