package mars

import (
	"container/heap"
	"sort"
	"strings"
	"time"

	"github.com/google/btree"
)

// The key-value state MARS holds (under Server.mu), the same in every
// store mode: a server without a Store changes it itself (kv_server.go), a
// replica over a Store keeps it as a copy of the store (kv_store.go).
//
// Revisions: every change (a key put, deleted or expired; a lease granted,
// released or expired) takes the next revision. They are the server's own
// counter without a Store (starting at the wall clock in microseconds, so
// a restarted MARS never reuses one while it makes fewer than a million
// changes a second) and the store's revisions with one. A key's revision
// is that of its last put; a lease's token is the revision of its grant.
//
// History: each app keeps its latest changes (kvHistory entries and
// kvHistoryBytes of values at most) for watches; a watch from a revision
// older than the app's horizon gets a resync instead.

const (
	kvHistory      = 100_000
	kvHistoryBytes = 64 << 20
)

// kvApp is the key-value state of one app.
type kvApp struct {
	name      string
	keys      *btree.BTreeG[*kvItem]
	bytes     int // keys and values held
	leases    map[string]*leaseEntry
	hist      []kvEntry // changes in revision order, from histHead on
	histHead  int
	histBytes int
	horizon   int64 // the history holds every change after it
	lastRev   int64 // the app's latest change
	polls     []*kvPoll
}

// kvItem is one key.
type kvItem struct {
	key     string
	value   []byte
	rev     int64
	expires int64 // server clock (ns) its TTL ends at; 0 = none
	ttl     int64 // ms, as put (the data file keeps it)
	wall    int64 // wall clock (Unix ms) its TTL ends at; 0 = none
}

// leaseEntry is one granted lease.
type leaseEntry struct {
	key     string
	holder  string
	inc     uint64
	token   int64
	ttl     time.Duration
	expires int64 // server clock (ns); with a Store the store expires it
	granted time.Time
	renewed time.Time
	sid     int64 // with a Store: the store lease it is attached to
}

func kvLess(a, b *kvItem) bool { return a.key < b.key }

func newKVApp(name string, horizon int64) *kvApp {
	return &kvApp{name: name, keys: btree.NewG(16, kvLess), leases: make(map[string]*leaseEntry), horizon: horizon, lastRev: horizon}
}

func (a *kvApp) get(key string) *kvItem {
	it, _ := a.keys.Get(&kvItem{key: key})
	return it
}

// set puts a key at rev and records the change.
func (a *kvApp) set(it *kvItem) {
	if old, ok := a.keys.ReplaceOrInsert(it); ok {
		a.bytes -= len(old.key) + len(old.value)
	}
	a.bytes += len(it.key) + len(it.value)
	a.record(kvEntry{Key: it.key, Value: it.value, Rev: it.rev})
}

// install puts a key without recording a change: it is part of a loaded
// state (a data file's snapshot, a store's Load), not news.
func (a *kvApp) install(it *kvItem) {
	if old, ok := a.keys.ReplaceOrInsert(it); ok {
		a.bytes -= len(old.key) + len(old.value)
	}
	a.bytes += len(it.key) + len(it.value)
}

// put sets a key: installed when snap, else recorded as a change.
func (a *kvApp) put(it *kvItem, snap bool) {
	if it.value == nil {
		it.value = []byte{}
	}
	if snap {
		a.install(it)
		return
	}
	a.set(it)
}

// del removes a key at rev and records the change; it reports whether the
// key existed.
func (a *kvApp) del(key string, rev int64, expired bool) bool {
	old, ok := a.keys.Delete(&kvItem{key: key})
	if !ok {
		return false
	}
	a.bytes -= len(old.key) + len(old.value)
	f := uint64(kvEntryDeleted)
	if expired {
		f |= kvEntryExpired
	}
	a.record(kvEntry{Key: key, Rev: rev, Flags: f})
	return true
}

// record appends a change to the history, dropping the oldest past the
// bounds (the horizon moves up to them).
func (a *kvApp) record(e kvEntry) {
	a.lastRev = max(a.lastRev, e.Rev)
	a.hist = append(a.hist, e)
	a.histBytes += kvEntrySize(&e)
	for len(a.hist)-a.histHead > kvHistory || a.histBytes > kvHistoryBytes && len(a.hist)-a.histHead > 1 {
		old := &a.hist[a.histHead]
		a.histBytes -= kvEntrySize(old)
		a.horizon = max(a.horizon, old.Rev)
		*old = kvEntry{}
		a.histHead++
	}
	if a.histHead > 1024 && a.histHead > len(a.hist)/2 {
		a.hist = append([]kvEntry(nil), a.hist[a.histHead:]...)
		a.histHead = 0
	}
}

// bump notes a change that is not a key's (leases) for the app's revision.
func (a *kvApp) bump(rev int64) { a.lastRev = max(a.lastRev, rev) }

// since returns the changes under prefix after rev, up to `upto`, at most
// about kvPage bytes; more says there are more, and to is the revision
// the batch is complete up to.
func (a *kvApp) since(prefix string, rev, upto int64) (out []kvEntry, to int64, more bool) {
	h := a.hist[a.histHead:]
	i := sort.Search(len(h), func(i int) bool { return h[i].Rev > rev })
	size := 0
	to = upto
	for ; i < len(h) && h[i].Rev <= upto; i++ {
		e := h[i]
		if !strings.HasPrefix(e.Key, prefix) {
			continue
		}
		if size > kvPage || len(out) >= maxKVEntries/2 {
			// Stop between revisions, so a batch never ends inside one.
			if out[len(out)-1].Rev != e.Rev {
				return out, out[len(out)-1].Rev, true
			}
		}
		out = append(out, e)
		size += kvEntrySize(&e)
	}
	return out, to, false
}

// list returns the keys under prefix after `after`, at most about kvPage
// bytes; more says there are more.
func (a *kvApp) list(prefix, after string, keysOnly bool, now int64) (out []kvEntry, more bool) {
	from := prefix
	if after >= from {
		from = after + "\x00"
	}
	size := 0
	a.keys.AscendGreaterOrEqual(&kvItem{key: from}, func(it *kvItem) bool {
		if !strings.HasPrefix(it.key, prefix) {
			return false
		}
		if it.expires != 0 && now >= it.expires {
			return true
		}
		if size > kvPage || len(out) >= maxKVEntries/2 {
			more = true
			return false
		}
		e := kvEntry{Key: it.key, Value: it.value, Rev: it.rev}
		if keysOnly {
			e.Value = nil
		}
		out = append(out, e)
		size += kvEntrySize(&e)
		return true
	})
	return out, more
}

// listLeases returns the live leases under prefix after `after`, by name,
// as entries [name, holder, token], at most maxKVEntries/2.
func (a *kvApp) listLeases(prefix, after string, now int64) (out []kvEntry, more bool) {
	names := make([]string, 0, len(a.leases))
	for k := range a.leases {
		if strings.HasPrefix(k, prefix) && k > after && a.liveLease(k, now) != nil {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if len(names) > maxKVEntries/2 {
		names, more = names[:maxKVEntries/2], true
	}
	for _, k := range names {
		l := a.leases[k]
		out = append(out, kvEntry{Key: k, Value: []byte(l.holder), Rev: l.token})
	}
	return out, more
}

// live returns a key unless its TTL ran out (the sweep deletes it soon).
func (a *kvApp) live(key string, now int64) *kvItem {
	it := a.get(key)
	if it == nil || it.expires != 0 && now >= it.expires {
		return nil
	}
	return it
}

// liveLease returns a lease unless it expired.
func (a *kvApp) liveLease(key string, now int64) *leaseEntry {
	l := a.leases[key]
	if l == nil || l.expires != 0 && now >= l.expires {
		return nil
	}
	return l
}

func (a *kvApp) empty() bool {
	return a.keys.Len() == 0 && len(a.leases) == 0 && len(a.polls) == 0
}

// kvDeadline is a TTL to apply: a key's or a lease's.
type kvDeadline struct {
	at    int64 // server clock, ns
	app   string
	key   string
	rev   int64 // the key's revision or the lease's token it was set for
	lease bool
}

// kvDeadlines is a min-heap of deadlines by time.
type kvDeadlines []kvDeadline

func (h kvDeadlines) Len() int           { return len(h) }
func (h kvDeadlines) Less(i, j int) bool { return h[i].at < h[j].at }
func (h kvDeadlines) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *kvDeadlines) Push(x any)        { *h = append(*h, x.(kvDeadline)) }
func (h *kvDeadlines) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (h *kvDeadlines) add(d kvDeadline) { heap.Push(h, d) }

// due pops the deadlines at or before now.
func (h *kvDeadlines) due(now int64) []kvDeadline {
	var out []kvDeadline
	for h.Len() > 0 && (*h)[0].at <= now {
		out = append(out, heap.Pop(h).(kvDeadline))
	}
	return out
}
