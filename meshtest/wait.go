package meshtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
)

// WaitLimit bounds every wait of the package (Eventually and the waits
// built on it): a condition that does not hold by then fails the test.
// A wait also gives up a second before the test binary's deadline (go test
// -timeout), so the failure says what it waited for.
const WaitLimit = time.Minute

// waitLimit is WaitLimit, or less before the test's deadline.
func waitLimit(t testing.TB) time.Duration {
	limit := WaitLimit
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			limit = max(min(limit, time.Until(dl)-time.Second), 0)
		}
	}
	return limit
}

// Eventually waits until cond returns true, asking it again every few
// milliseconds. If it does not hold within WaitLimit, it fails the test
// (t.Fatalf) with the message format, args. Call it from the test's
// goroutine.
func Eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	if !poll(waitLimit(t), cond) {
		t.Fatalf("meshtest: gave up waiting until "+format, args...)
	}
}

// poll asks cond until it holds (true) or limit passes (false).
func poll(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(pause*2, 20*time.Millisecond)
	}
	return true
}

// Eventually is the package's Eventually with the cluster's test.
func (c *Cluster) Eventually(cond func() bool, format string, args ...any) {
	c.t.Helper()
	Eventually(c.t, cond, format, args...)
}

// WaitState waits until n lists the node at addr in state st
// (mesh.StateNone: not listed).
func (c *Cluster) WaitState(n *mesh.Node, addr string, st mesh.NodeState) {
	c.t.Helper()
	var last mesh.NodeState
	if !poll(waitLimit(c.t), func() bool { last = n.NodeState(addr); return last == st }) {
		c.t.Fatalf("meshtest: %s lists %s %s, not %s", n.GetMyEndPoint(), addr, last, st)
	}
}

// WaitSettled waits until every running node (Nodes) lists exactly the
// running nodes as online.
func (c *Cluster) WaitSettled() {
	c.t.Helper()
	var diff string
	if !poll(waitLimit(c.t), func() bool { diff = c.unsettled(); return diff == "" }) {
		c.t.Fatalf("meshtest: the cluster did not settle: %s", diff)
	}
}

// unsettled describes the first node whose online list differs from the
// running nodes, or returns "".
func (c *Cluster) unsettled() string {
	want := c.Addrs()
	slices.Sort(want)
	for _, n := range c.Nodes() {
		got := n.GetNodeAddresses(nil)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Sprintf("%s lists [%s] online, want [%s]", n.GetMyEndPoint(), strings.Join(got, " "), strings.Join(want, " "))
		}
	}
	return ""
}
