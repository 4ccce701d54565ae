package mesh

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRemoveClosureCallback: RemoveOnSharedDataUpdate removes exactly the
// callback it is given, even among closures of one function literal
// (which share a code pointer).
func TestRemoveClosureCallback(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	var mu sync.Mutex
	var fired []string
	var cbs []func(string, int16)
	for _, room := range []string{"room1", "room2", "room3"} {
		cb := func(string, int16) {
			mu.Lock()
			fired = append(fired, room)
			mu.Unlock()
		}
		cbs = append(cbs, cb)
		n.OnSharedDataUpdate(cb)
	}
	n.RemoveOnSharedDataUpdate(cbs[0])
	n.SetSharedData("known-issue", 1)
	eventually(t, 3*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(fired) == 2
	}, "two callbacks fire")
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(fired)
	if !slices.Equal(fired, []string{"room2", "room3"}) {
		t.Fatalf("after removing room1's callback, the callbacks of %v fired", fired)
	}
}
