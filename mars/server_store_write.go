package mars

// Writes of a server over a Store (server_store.go): a report's changes in
// transactions, leaves and the offline sweep.

import (
	"bytes"
	"context"
	"hash/maphash"
	"slices"
)

// storeWrite writes a report's seed, node record and operations, in
// transactions of at most storeChunk keys. It returns the revision of the
// last write and the node's ack.
func (s *Server) storeWrite(r *report, kind StoreKind, keys int, gone map[string]bool) (rev int64, ack uint64, badKey, full int, err error) {
	st := s.st
	ctx, cancel := context.WithTimeout(st.ctx, storeTimeout)
	defer cancel()
	nodeKey := StoreKey{App: r.App, Kind: kind, Name: r.Addr}
	ackKey := StoreKey{App: r.App, Kind: StoreAck, Name: string(kind) + r.Addr}
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
	// The node record and the operations, in transactions of at most
	// storeChunk keys (any number of operations on them: a node cut off
	// from MARS for a while sends thousands of adds to a few keys); each
	// transaction moves Ack to the last change it applies.
	ops := r.Ops
	from := r.From // the chunk covers the changes in (from, to]
	for first := true; first || len(ops) > 0; first = false {
		n := opsOnKeys(ops, storeChunk-2) // with the node record and its mark
		chunk := ops[:n]
		ops = ops[n:]
		to := r.Seq
		if len(ops) > 0 {
			to = chunk[n-1].Seq
		}
		chunkFrom := from
		from = to
		ks := []StoreKey{nodeKey, ackKey}
		idx := make(map[string]int)
		for _, o := range chunk {
			if _, ok := idx[o.Key]; !ok && CheckKey(o.Key) == nil {
				idx[o.Key] = len(ks)
				ks = append(ks, StoreKey{App: r.App, Kind: StoreShared, Name: o.Key})
			}
		}
		var bad, fl int
		unlock := s.lockKeys(ks[2:])
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
			// The record may have vanished with changes of this
			// incarnation applied: the mark outside it has their Ack.
			var mark *StoredAck
			if cur[1].Rev != 0 {
				mark, _ = DecodeStoredAck(cur[1].Value) // a bad mark is replaced
			}
			if mark != nil && mark.Inc == r.Inc {
				nn.Ack = max(nn.Ack, mark.Ack)
			}
			nn.Alive, nn.Owner = true, st.owner
			if kind == StoreNode {
				nn.Life = storedLife(r.life())
			}
			if r.Info != nil {
				nn.setInfo(r.Info)
			} else if kind == StoreGuest {
				nn.Status = StatusOnline
			}
			var w []StoreWrite
			if chunkFrom <= nn.Ack { // else MARS misses changes before: the node sends them again
				vals := make(map[string]*int16, len(cur))
				for _, c := range cur[2:] {
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
			if nn.Ack > 0 && (mark == nil || *mark != StoredAck{Inc: nn.Inc, Ack: nn.Ack}) {
				w = append(w, StoreWrite{StoreKey: ackKey, Value: EncodeStoredAck(&StoredAck{Inc: nn.Inc, Ack: nn.Ack})})
			}
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

// opsOnKeys returns how many of ops, from the first, touch at most limit
// distinct keys.
func opsOnKeys(ops []op, limit int) int {
	keys := make(map[string]bool, min(len(ops), limit))
	for i, o := range ops {
		if !keys[o.Key] {
			if len(keys) == limit {
				return i
			}
			keys[o.Key] = true
		}
	}
	return len(ops)
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
		mark := StoreKey{App: l.App, Kind: StoreAck, Name: string(kind) + l.Addr}
		_, err := s.st.store.Update(ctx, []StoreKey{key, mark}, func(cur []StoreRecord) ([]StoreWrite, error) {
			var w []StoreWrite
			if a, err := DecodeStoredAck(cur[1].Value); cur[1].Rev != 0 && err == nil && a.Inc == l.Inc {
				w = append(w, StoreWrite{StoreKey: mark, Delete: true}) // this incarnation sends no more changes
			}
			n, err := DecodeStoredNode(cur[0].Value)
			switch {
			case cur[0].Rev == 0 || err != nil || n.Inc != l.Inc || n.Left:
			case kind == StoreGuest:
				w = append(w, StoreWrite{StoreKey: key, Delete: true})
			default:
				// Written, then deleted below: every replica's copy sees
				// the node go as having left, not as removed.
				n.Alive, n.Left = false, true
				w = append(w, StoreWrite{StoreKey: key, Value: EncodeStoredNode(n), Session: true})
			}
			return w, nil
		})
		if err == nil && kind == StoreNode {
			_, err = s.st.store.Update(ctx, []StoreKey{key}, func(cur []StoreRecord) ([]StoreWrite, error) {
				if n, err := DecodeStoredNode(cur[0].Value); cur[0].Rev != 0 && err == nil && n.Inc == l.Inc && n.Left {
					return []StoreWrite{{StoreKey: key, Delete: true}}, nil
				}
				return nil, nil
			})
		}
		if err != nil {
			s.storeFailed()
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
	s.mlog.tick()
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
			silent := now - max(e.lastSeen, s.st.failedAt) // see storeFailed
			switch {
			case silent > remove:
				jobs = append(jobs, job{StoreKey{name, StoreNode, addr}, e.inc, true})
			case silent > offline && e.alive:
				jobs = append(jobs, job{StoreKey{name, StoreNode, addr}, e.inc, false})
			}
		}
		for addr, g := range a.guests {
			if g.owner == s.st.owner && now-max(g.lastSeen, s.st.failedAt) > remove && len(jobs) < storeSweepBatch {
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
			s.storeFailed()
			s.warn.Warn("mars: store write failed", "node", j.key.Name, "err", err)
			return
		}
	}
}
