package mesh

import (
	"context"
	"fmt"
	"sync"
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
// cmdHandler.call and cmdHandler.callRequest), so dispatch costs one map
// lookup. A stream ID has one handler: the first registration wins.
type registry struct {
	mu      sync.RWMutex
	rpcs    map[uint16][]rpcHandler
	cmds    map[uint16][]cmdHandler
	rpc     map[uint16]rpcHandler // what dispatch runs: rpcs[id] chained
	cmd     map[uint16]cmdHandler // what dispatch runs: cmds[id] chained
	streams map[uint16]streamHandler
	dup     map[uint16]bool // a second stream handler was refused
}

func newRegistry() *registry {
	return &registry{
		rpcs: map[uint16][]rpcHandler{}, cmds: map[uint16][]cmdHandler{},
		rpc: map[uint16]rpcHandler{}, cmd: map[uint16]cmdHandler{},
		streams: map[uint16]streamHandler{}, dup: map[uint16]bool{},
	}
}

// addRPC adds a handler to id, after those already there. It always adds
// and returns true.
func (r *registry) addRPC(id uint16, h rpcHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rpcs[id] = append(r.rpcs[id], h)
	r.rpc[id] = chainRPC(r.rpcs[id])
	return true
}

// addCmd adds a handler to id, after those already there. It always adds
// and returns true.
func (r *registry) addCmd(id uint16, h cmdHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds[id] = append(r.cmds[id], h)
	if hs := r.cmds[id]; len(hs) == 1 {
		r.cmd[id] = hs[0]
	} else {
		r.cmd[id] = cmdHandler{chain: hs[:len(hs):len(hs)]}
	}
	return true
}

// addStream sets the stream handler of id; a second one is refused
// (false) and marks id duplicate.
func (r *registry) addStream(id uint16, h streamHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.streams[id]; ok {
		r.dup[id] = true
		return false
	}
	r.streams[id] = h
	return true
}

func (r *registry) getRPC(id uint16) (rpcHandler, bool) {
	r.mu.RLock()
	h, ok := r.rpc[id]
	r.mu.RUnlock()
	return h, ok
}

func (r *registry) getCmd(id uint16) (cmdHandler, bool) {
	r.mu.RLock()
	h, ok := r.cmd[id]
	r.mu.RUnlock()
	return h, ok
}

func (r *registry) getStream(id uint16) (streamHandler, bool) {
	r.mu.RLock()
	h, ok := r.streams[id]
	r.mu.RUnlock()
	return h, ok
}

// isDup reports whether id has more than one RPC or command handler, has
// both an RPC and a command handler, or was offered a second stream handler.
func (r *registry) isDup(id uint16) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
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
