package mesh

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// rpcHandler serves SendRPC; exactly one of its funcs is set.
type rpcHandler struct {
	plain func(data []byte, senderAddr string) ([]byte, error)
	ctx   func(ctx context.Context, data []byte, senderAddr string) ([]byte, error)
}

// cmdHandler serves Send, USend, SendMany, USendMany and SendRequest;
// exactly one of decoded and raw is set. A composite handler (several
// handlers on one ID) sets chain instead.
type cmdHandler struct {
	decoded func(data map[string]interface{}) ([]byte, error)
	raw     func(payload []byte, senderAddr string) ([]byte, error)
	chain   []cmdHandler // several handlers, in registration order
}

// streamHandler serves OpenStream.
type streamHandler func(ctx context.Context, s *Stream) error

// registry holds the handlers of every command ID, per table. RPC and
// command IDs may have several handlers, kept in registration order; the
// registry keeps, per ID, one handler that runs them all (see chainRPC,
// cmdHandler.call and cmdHandler.callRequest), so dispatch costs one
// lookup. A stream ID has one handler: the first registration wins.
//
// Dispatch reads an immutable snapshot of those handlers, indexed by ID
// (no lock and no hashing: the read goroutine looks one up per message);
// a registration, which is rare, copies the page it changes.
type registry struct {
	mu   sync.Mutex // registrations
	rpcs map[uint16][]rpcHandler
	cmds map[uint16][]cmdHandler
	dup  map[uint16]bool // a second stream handler was refused
	disp atomic.Pointer[dispatchTable]
}

// dispatchTable is what dispatch runs, per ID; never changed once stored.
type dispatchTable struct {
	rpc     idTable[rpcHandler] // rpcs[id] chained
	cmd     idTable[cmdHandler] // cmds[id] chained
	streams idTable[streamHandler]
}

// idTable maps a command ID to a value in two steps of 256 (no hashing
// per message); pages are allocated as IDs are set. A table is copied,
// never changed, once a dispatchTable holds it.
type idTable[T any] struct {
	pages [256]*[256]idEntry[T]
}

type idEntry[T any] struct {
	v  T
	ok bool
}

func (t *idTable[T]) get(id uint16) (T, bool) {
	if p := t.pages[id>>8]; p != nil {
		e := &p[id&0xff]
		return e.v, e.ok
	}
	var zero T
	return zero, false
}

// with returns a copy of t with id set to v (the page of id copied, the
// others shared).
func (t *idTable[T]) with(id uint16, v T) idTable[T] {
	c := *t
	page := new([256]idEntry[T])
	if old := t.pages[id>>8]; old != nil {
		*page = *old
	}
	page[id&0xff] = idEntry[T]{v: v, ok: true}
	c.pages[id>>8] = page
	return c
}

func newRegistry() *registry {
	r := &registry{rpcs: map[uint16][]rpcHandler{}, cmds: map[uint16][]cmdHandler{}, dup: map[uint16]bool{}}
	r.disp.Store(&dispatchTable{})
	return r
}

// addRPC adds a handler to id, after those already there. It always adds
// and returns true.
func (r *registry) addRPC(id uint16, h rpcHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rpcs[id] = append(r.rpcs[id], h)
	d := *r.disp.Load()
	d.rpc = d.rpc.with(id, chainRPC(r.rpcs[id]))
	r.disp.Store(&d)
	return true
}

// addCmd adds a handler to id, after those already there. It always adds
// and returns true.
func (r *registry) addCmd(id uint16, h cmdHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds[id] = append(r.cmds[id], h)
	d := *r.disp.Load()
	if hs := r.cmds[id]; len(hs) == 1 {
		d.cmd = d.cmd.with(id, hs[0])
	} else {
		d.cmd = d.cmd.with(id, cmdHandler{chain: hs[:len(hs):len(hs)]})
	}
	r.disp.Store(&d)
	return true
}

// addStream sets the stream handler of id; a second one is refused
// (false) and marks id duplicate.
func (r *registry) addStream(id uint16, h streamHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := *r.disp.Load()
	if _, ok := d.streams.get(id); ok {
		r.dup[id] = true
		return false
	}
	d.streams = d.streams.with(id, h)
	r.disp.Store(&d)
	return true
}

func (r *registry) getRPC(id uint16) (rpcHandler, bool) {
	return r.disp.Load().rpc.get(id)
}

func (r *registry) getCmd(id uint16) (cmdHandler, bool) {
	return r.disp.Load().cmd.get(id)
}

func (r *registry) getStream(id uint16) (streamHandler, bool) {
	return r.disp.Load().streams.get(id)
}

// isDup reports whether id has more than one RPC or command handler, has
// both an RPC and a command handler, or was offered a second stream handler.
func (r *registry) isDup(id uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	nRPC, nCmd := len(r.rpcs[id]), len(r.cmds[id])
	return r.dup[id] || nRPC > 1 || nCmd > 1 || (nRPC > 0 && nCmd > 0)
}

// chainRPC makes one handler of several: they run in order until one
// returns a non-nil response or an error, which answers. If any of them
// takes a context, the chain does (and passes it on).
func chainRPC(hs []rpcHandler) rpcHandler {
	if len(hs) == 1 {
		return hs[0]
	}
	hs = hs[:len(hs):len(hs)]
	withCtx := false
	for _, h := range hs {
		withCtx = withCtx || h.ctx != nil
	}
	run := func(ctx context.Context, data []byte, sender string) ([]byte, error) {
		for _, h := range hs {
			var resp []byte
			var err error
			if h.ctx != nil {
				resp, err = h.ctx(ctx, data, sender)
			} else {
				resp, err = h.plain(data, sender)
			}
			if resp != nil || err != nil {
				return resp, err
			}
		}
		return nil, nil
	}
	if withCtx {
		return rpcHandler{ctx: run}
	}
	return rpcHandler{plain: func(data []byte, sender string) ([]byte, error) { return run(nil, data, sender) }}
}

// callRequest runs the handler for a request (SendRequest): with several,
// they run in order until one returns a non-nil response or an error.
func (h cmdHandler) callRequest(payload []byte, sender string) ([]byte, error) {
	if h.chain == nil {
		return h.callOne(payload, sender)
	}
	for _, c := range h.chain {
		resp, err := c.callOne(payload, sender)
		if resp != nil || err != nil {
			return resp, err
		}
	}
	return nil, nil
}

// call runs the handler for a one-way message: with several, all run in
// order (a failing or panicking one does not stop the rest); the first
// error is returned.
func (h cmdHandler) call(payload []byte, sender string) ([]byte, error) {
	if h.chain == nil {
		return h.callOne(payload, sender)
	}
	var first error
	for _, c := range h.chain {
		if err := c.callRecover(payload, sender); err != nil && first == nil {
			first = err
		}
	}
	return nil, first
}

// callRecover runs one handler of a chain, turning a panic into an error
// so the handlers after it still run.
func (h cmdHandler) callRecover(payload []byte, sender string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	_, err = h.callOne(payload, sender)
	return err
}

func (h cmdHandler) callOne(payload []byte, sender string) ([]byte, error) {
	if h.raw != nil {
		return h.raw(payload, sender)
	}
	m, err := decodeMap(payload) // each handler gets a map of its own
	if err != nil {
		return nil, err
	}
	return h.decoded(m)
}
