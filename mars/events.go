package mars

import (
	"reflect"
	"sync"
	"unsafe"
)

// callbacks holds the event handlers. Handlers are copied out under mu and
// called without it.
type callbacks struct {
	mu       sync.Mutex
	initial  []func()
	update   []func()
	updated  []func()
	sdUpdate []handler[func(string, int16)]
	sdRemove []handler[func(string)]
	nextID   uint64
}

type handler[F any] struct {
	id uint64
	f  F
}

// OnInitialSync registers a callback for the first sync with MARS. If that
// sync already happened, the callback runs at once on the caller's goroutine.
func (c *Client) OnInitialSync(f func()) {
	c.cb.mu.Lock()
	select {
	case <-c.ready:
		c.cb.mu.Unlock()
		f()
		return
	default:
	}
	c.cb.initial = append(c.cb.initial, f)
	c.cb.mu.Unlock()
}

// OnUpdate registers a callback run before each sync with MARS is applied
// (about once per Interval, whether or not anything changed).
func (c *Client) OnUpdate(f func()) {
	c.cb.mu.Lock()
	c.cb.update = append(c.cb.update, f)
	c.cb.mu.Unlock()
}

// OnUpdated registers a callback run after each sync with MARS is applied.
func (c *Client) OnUpdated(f func()) {
	c.cb.mu.Lock()
	c.cb.updated = append(c.cb.updated, f)
	c.cb.mu.Unlock()
}

// OnSharedDataUpdate registers a callback for every shared key that is set
// or changes value in the view. It returns a function that removes exactly
// this registration.
func (c *Client) OnSharedDataUpdate(f func(key string, v int16)) (remove func()) {
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.nextID++
	id := c.cb.nextID
	c.cb.sdUpdate = append(c.cb.sdUpdate, handler[func(string, int16)]{id, f})
	return func() {
		c.cb.mu.Lock()
		defer c.cb.mu.Unlock()
		c.cb.sdUpdate = removeID(c.cb.sdUpdate, id)
	}
}

// OnSharedDataRemove registers a callback for every shared key removed
// from the view. It returns a function that removes exactly this registration.
func (c *Client) OnSharedDataRemove(f func(key string)) (remove func()) {
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.nextID++
	id := c.cb.nextID
	c.cb.sdRemove = append(c.cb.sdRemove, handler[func(string)]{id, f})
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
			return append(hs[:i:i], hs[i+1:]...)
		}
	}
	p := reflect.ValueOf(f).Pointer()
	for i := len(hs) - 1; i >= 0; i-- {
		if reflect.ValueOf(hs[i].f).Pointer() == p {
			return append(hs[:i:i], hs[i+1:]...)
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

// fire runs the handlers of one sync: OnUpdate was run before it was applied;
// this runs the shared-data handlers, the initial-sync handlers (once) and
// OnUpdated.
func (c *Client) fireChanges(changes []keyChange) {
	if len(changes) == 0 {
		return
	}
	c.cb.mu.Lock()
	up := append([]handler[func(string, int16)](nil), c.cb.sdUpdate...)
	rm := append([]handler[func(string)](nil), c.cb.sdRemove...)
	c.cb.mu.Unlock()
	for _, ch := range changes {
		if ch.removed {
			for _, h := range rm {
				h.f(ch.key)
			}
		} else {
			for _, h := range up {
				h.f(ch.key, ch.val)
			}
		}
	}
}

func (c *Client) fire(which *[]func()) {
	c.cb.mu.Lock()
	fs := append([]func(){}, (*which)...)
	c.cb.mu.Unlock()
	for _, f := range fs {
		f()
	}
}
