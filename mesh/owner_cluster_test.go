package mesh

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ownerKeys is how many keys the cluster tests place.
const ownerKeys = 100_000

func ownerKey(i int) string {
	if i < len(ownerKeyList) {
		return ownerKeyList[i]
	}
	return "room/" + strconv.Itoa(i)
}

// ownerKeyList holds the keys the 50-node test checks on every node, made
// once (formatting them per lookup was half the test's CPU under -race).
var ownerKeyList = func() []string {
	l := make([]string, ownerKeys)
	for i := range l {
		l[i] = "room/" + strconv.Itoa(i)
	}
	return l
}()

// converged waits until every live node lists the same online nodes of
// typ, count of them, and returns that list.
func converged(t *testing.T, nodes []*Node, typ string, count int) []string {
	t.Helper()
	var list []string
	eventually(t, 30*time.Second, func() bool {
		list = nil
		for _, n := range nodes {
			if n.life.closed.Load() {
				continue
			}
			l := n.GetNodeAddressesByType(typ)
			if len(l) != count || list != nil && !slices.Equal(l, list) {
				return false
			}
			list = l
		}
		return true
	}, "every node lists the same %d online %q nodes", count, typ)
	return list
}

// ownerMap computes the owner of every test key on n, with a view that
// lists the online nodes of typ as list throughout.
func ownerMap(t *testing.T, nodes []*Node, n *Node, typ string, list []string) []string {
	t.Helper()
	out := make([]string, ownerKeys)
	for attempt := 0; ; attempt++ {
		v := n.mc.View()
		gen := v.Generation()
		if slices.Equal(n.GetNodeAddressesByType(typ), list) {
			for i := range out {
				out[i], _ = n.Owner(typ, ownerKey(i))
			}
			if v.Generation() == gen {
				return out
			}
		}
		if attempt == 5 {
			t.Fatalf("the view of %s keeps changing", n.GetMyEndPoint())
		}
		if got := converged(t, nodes, typ, len(list)); !slices.Equal(got, list) {
			t.Fatalf("the views converged on other nodes: %v, want %v", got, list)
		}
	}
}

// agree checks that every live node whose view lists the online nodes
// of typ as list names the owners want (computed from such a view). A node
// whose view changes meanwhile (a peer briefly unreachable on a loaded
// machine) is checked again once the views converge again.
func agree(t *testing.T, nodes []*Node, typ string, list, want []string) {
	t.Helper()
	for _, n := range nodes {
		if n.life.closed.Load() {
			continue
		}
		for attempt := 0; ; attempt++ {
			v := n.mc.View()
			gen := v.Generation()
			same := slices.Equal(n.GetNodeAddressesByType(typ), list)
			bad := -1
			for i := 0; same && i < len(want); i++ {
				if a, _ := n.Owner(typ, ownerKey(i)); a != want[i] {
					bad = i
					break
				}
			}
			if same && bad < 0 {
				break
			}
			if same && v.Generation() == gen {
				a, _ := n.Owner(typ, ownerKey(bad))
				t.Fatalf("%s names %s the owner of %s, another node with the same view %s", n.GetMyEndPoint(), a, ownerKey(bad), want[bad])
			}
			if attempt == 5 {
				t.Fatalf("the view of %s keeps changing", n.GetMyEndPoint())
			}
			t.Logf("the view of %s changed while checking; again", n.GetMyEndPoint())
			if got := converged(t, nodes, typ, len(list)); !slices.Equal(got, list) {
				t.Fatalf("the views converged on other nodes: %v, want %v", got, list)
			}
		}
	}
}

// With 50 nodes, every node names the same owner for each of 100,000 keys
// once the views converge; a join moves about 1/50 of the keys, all to the
// new node, and a leave (Shutdown) only the leaver's, each within 20 %.
func TestOwner50Nodes(t *testing.T) {
	if testing.Short() {
		t.Skip("50 nodes; skipped with -short")
	}
	const nodes = 50
	c := newCluster(t, nodes, WithType("room"))
	list := converged(t, c.nodes, "room", nodes)
	before := ownerMap(t, c.nodes, c.nodes[0], "room", list)
	agree(t, c.nodes, "room", list, before)

	joiner := c.add(WithType("room"))
	list = converged(t, c.nodes, "room", nodes+1)
	after := ownerMap(t, c.nodes, c.nodes[0], "room", list)
	agree(t, c.nodes, "room", list, after)
	moved := 0
	for i := range after {
		if after[i] != before[i] {
			moved++
			if after[i] != joiner.GetMyEndPoint() {
				t.Fatalf("%s moved from %s to %s on a join of %s", ownerKey(i), before[i], after[i], joiner.GetMyEndPoint())
			}
		}
	}
	checkMoved(t, "join", moved, ownerKeys/nodes)

	leaver := c.nodes[7]
	if err := leaver.Shutdown(); err != nil {
		t.Fatal(err)
	}
	list = converged(t, c.nodes, "room", nodes)
	left := ownerMap(t, c.nodes, c.nodes[0], "room", list)
	agree(t, c.nodes, "room", list, left)
	moved = 0
	for i := range left {
		if left[i] != after[i] {
			moved++
			if after[i] != leaver.GetMyEndPoint() {
				t.Fatalf("%s moved from %s, which stayed", ownerKey(i), after[i])
			}
		}
	}
	checkMoved(t, "leave", moved, ownerKeys/nodes)
}

// onDispatcher reports whether the calling goroutine is a dispatcher lane
// and no transport or MARS client goroutine.
func onDispatcher() bool {
	buf := make([]byte, 64<<10)
	st := string(buf[:runtime.Stack(buf, false)])
	return strings.Contains(st, "internal/dispatch.(*Lane") &&
		!strings.Contains(st, "marsmesh/rudp.") && !strings.Contains(st, "marsmesh/mars.(*Client)")
}

// lossLog records Hold callbacks.
type lossLog struct {
	mu     sync.Mutex
	lost   map[string]string // key -> new owner
	twice  []string
	notDsp []string
}

func (l *lossLog) onLoss(key, newOwner string) {
	ok := onDispatcher()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = map[string]string{}
	}
	if _, dup := l.lost[key]; dup {
		l.twice = append(l.twice, key)
	}
	l.lost[key] = newOwner
	if !ok {
		l.notDsp = append(l.notDsp, key)
	}
}

func (l *lossLog) snapshot() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.twice) > 0 || len(l.notDsp) > 0 {
		panic(fmt.Sprintf("onLoss ran twice for %v, off the dispatcher for %v", l.twice, l.notDsp))
	}
	out := make(map[string]string, len(l.lost))
	for k, v := range l.lost {
		out[k] = v
	}
	return out
}

// Hold: a node holds the keys it owns; when a node joins, exactly the keys
// the newcomer takes are lost (onLoss names it), once each, on the
// dispatcher; a key held but owned elsewhere is lost at once; a released
// hold never fires; when the holder shuts down, each remaining key is lost
// to the node the others name its owner.
func TestHoldHandsOff(t *testing.T) {
	const keys = 3000
	c := newCluster(t, 3, WithType("room"))
	converged(t, c.nodes, "room", 3)
	a := c.nodes[0]
	var log lossLog
	mine := map[string]bool{}
	var released []string
	for i := range keys {
		k := ownerKey(i)
		if o, _ := a.Owner("room", k); o != a.GetMyEndPoint() {
			continue
		}
		mine[k] = true
		release := a.Hold("room", k, log.onLoss)
		if i%10 == 0 {
			release()
			release() // idempotent
			released = append(released, k)
		}
	}
	held := len(mine) - len(released)
	if a.HeldKeys() != held {
		t.Fatalf("HeldKeys %d, want %d", a.HeldKeys(), held)
	}

	// A key another node owns is lost at once.
	var foreign string
	for i := keys; foreign == ""; i++ {
		if o, _ := a.Owner("room", ownerKey(i)); o != a.GetMyEndPoint() {
			foreign = ownerKey(i)
		}
	}
	a.Hold("room", foreign, log.onLoss)
	eventually(t, 10*time.Second, func() bool { _, ok := log.snapshot()[foreign]; return ok }, "a key owned elsewhere is lost at once")
	if got, want := log.snapshot()[foreign], must(a.Owner("room", foreign)); got != want {
		t.Fatalf("lost %s to %q, its owner is %s", foreign, got, want)
	}

	d := c.add(WithType("room"))
	converged(t, c.nodes, "room", 4)
	var takes []string
	for k := range mine {
		if o, _ := a.Owner("room", k); o == d.GetMyEndPoint() && !slices.Contains(released, k) {
			takes = append(takes, k)
		}
	}
	if len(takes) == 0 {
		t.Fatal("the new node takes none of the held keys")
	}
	eventually(t, 10*time.Second, func() bool { return len(log.snapshot()) == len(takes)+1 }, "%d keys lost to the new node", len(takes))
	lost := log.snapshot()
	for _, k := range takes {
		if lost[k] != d.GetMyEndPoint() {
			t.Fatalf("%s lost to %q, want the new node %s", k, lost[k], d.GetMyEndPoint())
		}
	}
	if a.HeldKeys() != held-len(takes) {
		t.Fatalf("HeldKeys %d after the join, want %d", a.HeldKeys(), held-len(takes))
	}
	t.Logf("held %d keys; %d lost to the new node", held, len(takes))

	// Shutdown: every key still held is lost to the next owner as draining
	// starts (the others agree once they see the drain).
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	converged(t, c.nodes, "room", 3)
	lost = log.snapshot()
	b := c.nodes[1]
	for k := range mine {
		if slices.Contains(released, k) {
			if _, ok := lost[k]; ok {
				t.Fatalf("released %s fired", k)
			}
			continue
		}
		if o, _ := b.Owner("room", k); lost[k] != o {
			t.Fatalf("%s lost to %q at shutdown, the others name %s", k, lost[k], o)
		}
	}
	if a.HeldKeys() != 0 {
		t.Fatalf("%d keys still held after Shutdown", a.HeldKeys())
	}
}

func must(addr string, ok bool) string {
	if !ok {
		panic("no owner")
	}
	return addr
}

// SendRPCToOwner reaches the owner; an owner that refuses with ErrDraining
// is skipped for the next owner; no node of the type is a send error
// wrapping ErrNoOwner; the typed form follows the same rules.
func TestSendRPCToOwner(t *testing.T) {
	c := newCluster(t, 3, WithType("room"))
	converged(t, c.nodes, "room", 3)
	const cmdWho = 501
	for _, n := range c.nodes {
		n.HandleRPC(cmdWho, func(data []byte, _ string) ([]byte, error) { return []byte(n.GetMyEndPoint()), nil })
	}
	caller := c.nodes[0]
	ctx := context.Background()
	for i := range 50 {
		k := ownerKey(i)
		resp, err := caller.SendRPCToOwner(ctx, "room", k, cmdWho, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := must(caller.Owner("room", k)); string(resp) != want {
			t.Fatalf("%s answered for %s, owner %s", resp, k, want)
		}
	}
	_, err := caller.SendRPCToOwner(ctx, "nosuchtype", "room/1", cmdWho, nil)
	if !errors.Is(err, ErrNoOwner) || !IsSendError(err) {
		t.Fatalf("no node of the type: %v", err)
	}
	who := NewRPC[string, string](cmdWho + 1)
	for _, n := range c.nodes {
		who.Handle(n, func(context.Context, string) (string, error) { return n.GetMyEndPoint(), nil })
	}

	// An owner that drains without telling anyone: the caller still lists it
	// online, gets ErrDraining, and asks the next owner.
	var k string
	for i := 0; k == ""; i++ {
		if must(caller.Owner("room", ownerKey(i))) == c.nodes[2].GetMyEndPoint() {
			k = ownerKey(i)
		}
	}
	c.nodes[2].life.draining.Store(true)
	next := caller.Owners("room", k, 2)[1]
	retries := caller.own.retries.Load()
	resp, err := caller.SendRPCToOwner(ctx, "room", k, cmdWho, nil)
	if err != nil || string(resp) != next {
		t.Fatalf("owner draining: %q, %v; want the next owner %s", resp, err, next)
	}
	if caller.own.retries.Load() != retries+1 {
		t.Fatal("no retry counted")
	}
	if o := must(caller.Owner("room", k)); o != next {
		t.Fatalf("after the draining answer the owner is %s, want %s", o, next)
	}
	got, err := who.CallOwner(ctx, caller, "room", k, "")
	if err != nil || got != next {
		t.Fatalf("CallOwner: %q, %v; want %s", got, err, next)
	}
	if _, err := who.CallOwner(ctx, caller, "nosuchtype", k, ""); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("CallOwner with no node of the type: %v", err)
	}
}

// A weight change alone (no node joins or leaves) moves weighted owners,
// and a node holding keys hears of the ones it lost.
func TestHoldWeightChange(t *testing.T) {
	c := newCluster(t, 2, WithType("room"), WithValues(map[string]interface{}{"weight": 1}))
	converged(t, c.nodes, "room", 2)
	a, b := c.nodes[0], c.nodes[1]
	w := WeightedBy("weight")
	var log lossLog
	var mine []string
	for i := range 400 {
		if k := ownerKey(i); must(a.Owner("room", k, w)) == a.GetMyEndPoint() {
			mine = append(mine, k)
			a.Hold("room", k, log.onLoss, w)
		}
	}
	b.SetNodeValue("weight", 50)
	eventually(t, 10*time.Second, func() bool {
		v, _ := a.GetNodeValue(b.GetMyEndPoint(), "weight").(int64)
		return v == 50
	}, "a sees b's new weight")
	var moved []string
	for _, k := range mine {
		if must(a.Owner("room", k, w)) == b.GetMyEndPoint() {
			moved = append(moved, k)
		}
	}
	if len(moved) < len(mine)/2 {
		t.Fatalf("only %d of %d keys moved to the heavier node", len(moved), len(mine))
	}
	eventually(t, 10*time.Second, func() bool { return len(log.snapshot()) == len(moved) }, "%d keys lost to the heavier node", len(moved))
	for k, to := range log.snapshot() {
		if to != b.GetMyEndPoint() || !slices.Contains(moved, k) {
			t.Fatalf("%s lost to %s", k, to)
		}
	}
	if a.HeldKeys() != len(mine)-len(moved) {
		t.Fatalf("HeldKeys %d, want %d", a.HeldKeys(), len(mine)-len(moved))
	}
}
