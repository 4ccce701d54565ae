package mars

import (
	"encoding/binary"
	"time"
)

// Reconciling a restarted MARS with the views nodes kept (digest.go).

// Settling: right after it starts, MARS is still taking the
// re-registrations of the nodes it served before, so a node's kept view
// differs from MARS's state mostly by nodes that have not registered yet.
// While registrations keep arriving (the last one within settleQuiet) and
// for at most settleMax after the start, a digest with more than 1/16 of
// its buckets (and more than 4) differing is answered with syncWait;
// later, with more than half of 8 or more differing, by a full snapshot.
const (
	settleQuiet = int64(500 * time.Millisecond)
	settleMax   = int64(5 * time.Second)
	// bucketAgain: a node that got its differing buckets is answered a
	// wait to another digest for this long (it was sent before the answer
	// arrived; if the answer was lost, the node asks again after the wait).
	bucketAgain = int64(time.Second)
)

// digAdd counts an entry hash in the app's digest (subtract: -h).
func (a *appState) digAdd(nameHash, h uint64) {
	a.dig.add(nameHash, h)
	a.digGen++
}

// digestAt folds the app's digest to nb buckets (bucketOf keeps the low
// bits, so bucket i of nb sums the buckets j of the full digest with
// j mod nb = i). It is cached until the next change.
func (a *appState) digestAt(nb int) *digest {
	if a.digFold.buckets != nil && a.digFoldGen == a.digGen && len(a.digFold.buckets) == nb {
		return &a.digFold
	}
	d := newDigest(nb)
	d.total = a.dig.total
	for i, x := range a.dig.buckets {
		d.buckets[i&(nb-1)] += x
	}
	a.digFold, a.digFoldGen = d, a.digGen
	return &a.digFold
}

// reconcileReply is what MARS answers a digest with.
type reconcileReply int

const (
	reconcileFull    reconcileReply = iota // send a full snapshot
	reconcileWait                          // ask again soon
	reconcileBuckets                       // send the differing buckets
)

// reconcile compares a node's digest with the app's state. With
// reconcileBuckets it returns the body parts (possibly with nothing but
// the bucket list: the view is equal).
func (s *Server) reconcile(a *appState, addr string, d *digest) (reconcileReply, [][]byte) {
	now := s.now()
	e := a.nodes[addr]
	if e == nil {
		e = a.guests[addr]
	}
	if e != nil && e.bucketAt != 0 && now-e.bucketAt < bucketAgain {
		// A second digest sent before the answer to the first arrived:
		// the node will not use a second answer (View.apply).
		return reconcileWait, nil
	}
	nb := len(d.buckets)
	mine := a.digestAt(nb)
	var diff []int
	for i, x := range mine.buckets {
		if x != d.buckets[i] {
			diff = append(diff, i)
		}
	}
	if len(diff) == 0 && mine.total != d.total {
		return reconcileFull, nil // a 32-bit collision: be sure
	}
	switch {
	case len(diff) <= max(nb/16, 4):
	case now < settleMax && now-s.lastReg < settleQuiet:
		return reconcileWait, nil
	case len(diff) > nb/2 && nb >= 8:
		return reconcileFull, nil // as dear, and a full snapshot is shared more
	}
	if e != nil {
		e.bucketAt = now
	}
	return reconcileBuckets, a.bucketBody(nb, diff)
}

// bucketBody builds the body of a syncBuckets sync: the nodes and keys of
// the buckets in diff, and the bucket list. Nodes with the same view get
// the same body, so the last one is kept for reuse until the next change.
func (a *appState) bucketBody(nb int, diff []int) [][]byte {
	key := make([]byte, 0, 16+4*len(diff))
	key = binary.BigEndian.AppendUint64(key, a.ver)
	key = binary.BigEndian.AppendUint64(key, a.digGen)
	key = binary.BigEndian.AppendUint64(key, uint64(nb))
	for _, i := range diff {
		key = binary.BigEndian.AppendUint32(key, uint32(i))
	}
	if a.bucketParts != nil && string(key) == a.bucketKey {
		return a.bucketParts
	}
	in := make(map[int]bool, len(diff))
	for _, i := range diff {
		in[i] = true
	}
	var b bodyBuilder
	if len(diff) > 0 {
		for _, e := range a.nodes {
			if in[bucketOf(e.nameHash, nb)] {
				b.addNode(e)
			}
		}
		for k, e := range a.keys {
			if in[bucketOf(keyNameHash(k), nb)] {
				b.keys = append(b.keys, kv{k, e.val})
			}
		}
	}
	parts := b.buildAll()
	for i, p := range parts {
		// [nb, total, bucket...]: the first part lists the buckets.
		list := diff
		if i > 0 {
			list = nil
		}
		p = appendArrayLen(p, 2+len(list))
		p = appendUint(p, uint64(nb))
		p = appendUint(p, a.dig.total)
		for _, x := range list {
			p = appendUint(p, uint64(x))
		}
		parts[i] = p
	}
	a.bucketParts, a.bucketKey = parts, string(key)
	return parts
}
