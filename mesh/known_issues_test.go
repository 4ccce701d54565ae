package mesh

import (
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// Failing tests for bugs outside package mesh (mars, rudp, config), which
// this package's tests do not fix. They skip unless
// MESH_RUN_KNOWN_ISSUES=1, so the owner of the code can check a fix:
//
//	MESH_RUN_KNOWN_ISSUES=1 go test -run KnownIssue ./mesh

func knownIssue(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("MESH_RUN_KNOWN_ISSUES") == "" {
		t.Skip("known issue outside package mesh (set MESH_RUN_KNOWN_ISSUES=1 to run): " + what)
	}
}

// TestKnownIssueRemoveClosureCallback: RemoveOnSharedDataUpdate must
// remove the callback it is given. mars.Client identifies callbacks by
// their code pointer (removeFunc, now in mars/events.go), which every closure
// made from one function literal shares, so removing the first of three
// per-room closures removes the last one instead.
func TestKnownIssueRemoveClosureCallback(t *testing.T) {
	knownIssue(t, "mars: RemoveOnSharedDataUpdate/Remove match callbacks by code pointer and can remove another closure of the same literal")
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
