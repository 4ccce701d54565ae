package mars

import (
	"reflect"
	"slices"
	"sync"
	"unsafe"

	"github.com/marsmesh/marsmesh/internal/dispatch"
)

// Callbacks of a Client. None runs on the client's loop: each
// registration is a lane of the node's dispatcher (internal/dispatch), so a
// callback that blocks delays only itself, and one that falls behind gets
// coalesced events (per key: the latest), never a gap.

// laneLimit is how many events a registration queues in order before its
// lane coalesces.
const laneLimit = 4096

// callbacks holds the registrations.
type callbacks struct {
	mu       sync.Mutex
	initial  []func() // waiting for the first sync
	update   []func()
	updated  []func()
	syncs    *dispatch.Lane[struct{}, syncTick] // runs update and updated
	sdUpdate []handler[func(string, int16)]
	sdRemove []handler[func(string)]
	nextID   uint64
}

// handler is one registration and the lane that delivers to it.
type handler[F any] struct {
	id   uint64
	f    F
	post func(keyChange) // queue an event for f
	stop func()          // close its lane
}

type tick struct{}

// tickLane delivers "something happened" to f: events carry nothing, so a
// lane that is behind holds one.
func tickLane(d *dispatch.Dispatcher, f func()) (post func(keyChange), stop func()) {
	l := dispatch.NewLane(d, dispatch.LaneConfig[tick, tick]{
		Limit: 1,
		Run:   func(tick) { f() },
		Key:   func(tick) tick { return tick{} },
		Merge: func(o, _ tick) (tick, bool) { return o, true },
	})
	return func(keyChange) { l.Post(tick{}) }, l.Close
}

// keyLane delivers shared-data changes to run; behind, one per key (the
// latest).
func keyLane(d *dispatch.Dispatcher, run func(keyChange)) (post func(keyChange), stop func()) {
	l := dispatch.NewLane(d, dispatch.LaneConfig[string, keyChange]{
		Limit: laneLimit,
		Run:   run,
		Key:   func(k keyChange) string { return k.key },
		Merge: func(_, n keyChange) (keyChange, bool) { return n, true },
	})
	return l.Post, l.Close
}

// syncTick is what a sync lane has pending: the OnUpdate (after false) or
// OnUpdated (true) callbacks, and with two set, the other kind after them.
type syncTick struct{ after, two bool }

// last is the kind of callbacks t runs last.
func (t syncTick) last() bool { return t.after != t.two }

// syncLane delivers the syncs to OnUpdate and OnUpdated callbacks: one lane
// for both, so they alternate as the Diarkis API has them; behind, it holds
// one pending run of each kind, in the order they were posted (a run of
// update, updated, update collapses to its first and last: update).
func (c *Client) syncLane() *dispatch.Lane[struct{}, syncTick] {
	run := func(after bool) {
		list := &c.cb.update
		if after {
			list = &c.cb.updated
		}
		c.cb.mu.Lock()
		fs := slices.Clone(*list)
		c.cb.mu.Unlock()
		for _, f := range fs {
			f()
		}
	}
	return dispatch.NewLane(c.disp, dispatch.LaneConfig[struct{}, syncTick]{
		Limit: 1,
		Run: func(t syncTick) {
			run(t.after)
			if t.two {
				run(!t.after)
			}
		},
		Key: func(syncTick) struct{} { return struct{}{} },
		Merge: func(o, n syncTick) (syncTick, bool) {
			if n.after != o.last() {
				o.two = !o.two // A then B; A, B then A is A
			}
			return o, true
		},
	})
}

// OnInitialSync registers a callback for the first sync with MARS (for a
// node, the first in which its view lists it online). If that already
// happened, the callback is queued at once. It runs on the dispatcher.
func (c *Client) OnInitialSync(f func()) {
	c.cb.mu.Lock()
	select {
	case <-c.ready:
		c.cb.mu.Unlock()
		c.once(f)
		return
	default:
	}
	c.cb.initial = append(c.cb.initial, f)
	c.cb.mu.Unlock()
}

// once runs f one time on the dispatcher.
func (c *Client) once(f func()) {
	post, stop := tickLane(c.disp, f)
	post(keyChange{})
	stop()
}

// OnUpdate registers a callback for every sync with MARS (about once per
// Interval, whether or not anything changed). It runs on the dispatcher
// after the sync was applied (the Diarkis name says "before"; no callback
// runs on the sync loop); a callback that is behind runs once for the syncs
// it missed.
func (c *Client) OnUpdate(f func()) {
	c.cb.mu.Lock()
	c.cb.update = append(c.cb.update, f)
	c.cb.mu.Unlock()
}

// OnUpdated registers a callback run after each sync with MARS is applied,
// on the dispatcher. OnUpdate and OnUpdated callbacks share one lane, so
// they alternate; one that blocks holds up the others of that lane (not
// the syncs, nor other callbacks), which then run once for the syncs they
// missed.
func (c *Client) OnUpdated(f func()) {
	c.cb.mu.Lock()
	c.cb.updated = append(c.cb.updated, f)
	c.cb.mu.Unlock()
}

// OnSharedDataUpdate registers a callback for every shared key that is set
// or changes value in the view, on the dispatcher, in order (behind, it
// gets the latest value of each key). It returns a function that removes
// exactly this registration.
func (c *Client) OnSharedDataUpdate(f func(key string, v int16)) (remove func()) {
	post, stop := keyLane(c.disp, func(k keyChange) { f(k.key, k.val) })
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.nextID++
	id := c.cb.nextID
	c.cb.sdUpdate = append(c.cb.sdUpdate, handler[func(string, int16)]{id, f, post, stop})
	return func() {
		c.cb.mu.Lock()
		defer c.cb.mu.Unlock()
		c.cb.sdUpdate = removeID(c.cb.sdUpdate, id)
	}
}

// OnSharedDataRemove registers a callback for every shared key removed
// from the view, on the dispatcher, in order. It returns a function that
// removes exactly this registration.
func (c *Client) OnSharedDataRemove(f func(key string)) (remove func()) {
	post, stop := keyLane(c.disp, func(k keyChange) { f(k.key) })
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.nextID++
	id := c.cb.nextID
	c.cb.sdRemove = append(c.cb.sdRemove, handler[func(string)]{id, f, post, stop})
	return func() {
		c.cb.mu.Lock()
		defer c.cb.mu.Unlock()
		c.cb.sdRemove = removeID(c.cb.sdRemove, id)
	}
}

// RemoveOnSharedDataUpdate removes the most recent registration of f, as
// the mesh API does: the registration of this very func value (this
// closure), or else of a func with the same code (for method values, which
// are new values each time they are written). The function
// OnSharedDataUpdate returned removes its registration without any matching.
func (c *Client) RemoveOnSharedDataUpdate(f func(key string, v int16)) {
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.sdUpdate = removeFunc(c.cb.sdUpdate, f)
}

// RemoveOnSharedDataRemove is RemoveOnSharedDataUpdate for removal callbacks.
func (c *Client) RemoveOnSharedDataRemove(f func(key string)) {
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.sdRemove = removeFunc(c.cb.sdRemove, f)
}

func removeID[F any](hs []handler[F], id uint64) []handler[F] {
	for i := range hs {
		if hs[i].id == id {
			hs[i].stop()
			return append(hs[:i:i], hs[i+1:]...)
		}
	}
	return hs
}

// removeFunc removes the most recent registration of f. It first looks for
// the very same func value (the same closure: closures made by one function
// literal share their code but not their value), then, failing that, for a
// func with the same code (reflect.Value.Pointer): a method value such as
// obj.Method is a new func value each time it is written, so only its code
// matches. Only when the exact value is not found can that fallback pick
// another closure of the same literal.
func removeFunc[F any](hs []handler[F], f F) []handler[F] {
	v := funcValue(f)
	for i := len(hs) - 1; i >= 0; i-- {
		if funcValue(hs[i].f) == v {
			return removeID(hs, hs[i].id)
		}
	}
	p := reflect.ValueOf(f).Pointer()
	for i := len(hs) - 1; i >= 0; i-- {
		if reflect.ValueOf(hs[i].f).Pointer() == p {
			return removeID(hs, hs[i].id)
		}
	}
	return hs
}

// funcValue returns the identity of a func value: a Go func value is a
// pointer to its closure record (code pointer plus captured variables), so
// two closures of one literal differ here while reflect sees the same code.
// F must be a func type.
func funcValue[F any](f F) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&f))
}

// fireChanges queues the shared-data changes of one sync for their
// callbacks.
func (c *Client) fireChanges(changes []keyChange) {
	if len(changes) == 0 {
		return
	}
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	for _, ch := range changes {
		list := c.cb.sdUpdate
		if ch.removed {
			for _, h := range c.cb.sdRemove {
				h.post(ch)
			}
			continue
		}
		for _, h := range list {
			h.post(ch)
		}
	}
}

// fireSync queues the OnUpdate (after false) or OnUpdated (true) callbacks
// of one sync.
func (c *Client) fireSync(after bool) {
	c.cb.mu.Lock()
	n := len(c.cb.update)
	if after {
		n = len(c.cb.updated)
	}
	c.cb.mu.Unlock()
	if n > 0 {
		c.cb.syncs.Post(syncTick{after: after})
	}
}

// fireInitial queues the initial-sync callbacks (once).
func (c *Client) fireInitial() {
	c.cb.mu.Lock()
	fs := c.cb.initial
	c.cb.initial = nil
	c.cb.mu.Unlock()
	for _, f := range fs {
		c.once(f)
	}
}
