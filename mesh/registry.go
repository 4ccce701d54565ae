package mesh

import (
	"context"
	"sync"
)

// rpcHandler serves SendRPC; exactly one of its funcs is set.
type rpcHandler struct {
	plain func(data []byte, senderAddr string) ([]byte, error)
	ctx   func(ctx context.Context, data []byte, senderAddr string) ([]byte, error)
}

// cmdHandler serves Send, USend, SendMany, USendMany and SendRequest;
// exactly one of its funcs is set.
type cmdHandler struct {
	decoded func(data map[string]interface{}) ([]byte, error)
	raw     func(payload []byte, senderAddr string) ([]byte, error)
}

// registry holds one handler per command ID and table. The first
// registration wins; a later one is refused and marks the ID duplicate.
type registry struct {
	mu  sync.RWMutex
	rpc map[uint16]rpcHandler
	cmd map[uint16]cmdHandler
	dup map[uint16]bool
}

func newRegistry() *registry {
	return &registry{rpc: map[uint16]rpcHandler{}, cmd: map[uint16]cmdHandler{}, dup: map[uint16]bool{}}
}

func (r *registry) addRPC(id uint16, h rpcHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.rpc[id]; ok {
		r.dup[id] = true
		return false
	}
	r.rpc[id] = h
	return true
}

func (r *registry) addCmd(id uint16, h cmdHandler) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cmd[id]; ok {
		r.dup[id] = true
		return false
	}
	r.cmd[id] = h
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

// isDup reports whether a second registration of id was refused, or id is
// registered both as an RPC and as a command.
func (r *registry) isDup(id uint16) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, inRPC := r.rpc[id]
	_, inCmd := r.cmd[id]
	return r.dup[id] || (inRPC && inCmd)
}

// copyInto registers every handler of r in dst (first registration wins).
func (r *registry) copyInto(dst *registry) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for id, h := range r.rpc {
		dst.addRPC(id, h)
	}
	for id, h := range r.cmd {
		dst.addCmd(id, h)
	}
	for id := range r.dup {
		dst.mu.Lock()
		dst.dup[id] = true
		dst.mu.Unlock()
	}
}
