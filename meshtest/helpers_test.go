package meshtest_test

import (
	"sync"
	"testing"

	"github.com/marsmesh/marsmesh/internal/leaktest"
	"github.com/marsmesh/marsmesh/mesh"
)

func leaktestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// events records the membership events one subscriber gets.
type events struct {
	mu  sync.Mutex
	got []mesh.NodeEvent
}

func (e *events) add(ev mesh.NodeEvent) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

// states lists the new states of addr's events, in order.
func (e *events) states(addr string) []mesh.NodeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []mesh.NodeState
	for _, ev := range e.got {
		if ev.Addr == addr {
			out = append(out, ev.New)
		}
	}
	return out
}

// incStates lists the new states of the events of one incarnation of addr.
func (e *events) incStates(addr string, inc uint64) []mesh.NodeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []mesh.NodeState
	for _, ev := range e.got {
		if ev.Addr == addr && ev.Incarnation == inc {
			out = append(out, ev.New)
		}
	}
	return out
}
