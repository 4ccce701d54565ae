package mars

import (
	"fmt"
	"testing"
)

// decodeParts decodes the body parts a delta or full snapshot returned.
func decodeParts(t *testing.T, parts [][]byte) syncBody {
	t.Helper()
	var b syncBody
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		r := reader{b: p}
		if err := decodeSyncBody(&r, 6, &b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func newTestApp() *appState {
	var clock uint64
	return newAppState("t", &clock)
}

func addTestNode(a *appState, addr string) *nodeEntry {
	e := &nodeEntry{addr: addr, inc: 1, info: nodeInfo{Type: "x", Status: StatusOnline}, alive: true}
	a.addNode(e)
	return e
}

func TestDeltaCarriesOnlyChanges(t *testing.T) {
	a := newTestApp()
	for i := range 100 {
		addTestNode(a, fmt.Sprintf("n%d:1", i))
		a.setKey(fmt.Sprintf("k%d", i), int16(i))
	}
	v := a.ver
	if parts, ok := a.delta(v); !ok || len(parts) != 1 || parts[0] != nil {
		t.Fatalf("no changes: %v %v", parts, ok)
	}
	e := a.nodes["n5:1"]
	e.info.Type = "y"
	a.nodeChanged(e)
	a.setKey("k7", 70)
	a.setKey("k7", 71) // changed twice: one entry, the latest
	a.removeKey("k8", 0)
	a.removeNode("n9:1", goneRemoved, 0)
	if a.setKey("k1", 1) {
		t.Fatal("setting the same value counted as a change")
	}
	parts, ok := a.delta(v)
	if !ok {
		t.Fatal("small delta refused")
	}
	b := decodeParts(t, parts)
	if len(b.Nodes) != 1 || b.Nodes[0].Type != "y" || len(b.Gone) != 1 || b.Gone[0] != "n9:1" ||
		len(b.Keys) != 1 || b.Keys[0] != (kv{"k7", 71}) || len(b.Dropped) != 1 || b.Dropped[0] != "k8" {
		t.Fatalf("delta: %+v", b)
	}
	// A node far behind, with more changes since its version than the
	// snapshot has entries, gets a full snapshot instead.
	for i := range 300 {
		a.setKey("k1", int16(i))
	}
	if _, ok := a.delta(1); ok {
		t.Fatal("a delta of nearly everything should become a full snapshot")
	}
	fp, _ := a.full(0, 0)
	full := decodeParts(t, fp)
	if len(full.Nodes) != 99 || len(full.Keys) != 99 || len(full.Gone)+len(full.Dropped) != 0 {
		t.Fatalf("full: %d nodes %d keys", len(full.Nodes), len(full.Keys))
	}
}

func TestTombstonesExpireAndRaiseTheHorizon(t *testing.T) {
	a := newTestApp()
	addTestNode(a, "a:1")
	a.setKey("k", 1)
	v := a.ver
	a.removeKey("k", 100)
	a.removeNode("a:1", goneRemoved, 200)
	if a.needsFull(true, v, a.ver) {
		t.Fatal("fresh tombstones should allow a delta")
	}
	a.expireTombs(150+1000, 1000, 100) // the key's tombstone is older than the TTL
	if len(a.goneKeys) != 0 || len(a.goneNodes) != 1 {
		t.Fatalf("tombstones left: %d keys %d nodes", len(a.goneKeys), len(a.goneNodes))
	}
	if !a.needsFull(true, v, a.ver) {
		t.Fatal("a view from before an expired tombstone must get a full snapshot")
	}
	if a.needsFull(true, a.ver, a.ver) {
		t.Fatal("a current view does not need a full snapshot")
	}
	// Count limit.
	for i := range 10 {
		a.setKey(fmt.Sprintf("x%d", i), 1)
		a.removeKey(fmt.Sprintf("x%d", i), 300)
	}
	a.expireTombs(300, 1000, 4)
	if n := len(a.goneKeys) + len(a.goneNodes); n > 4 {
		t.Fatalf("%d tombstones kept, limit 4", n)
	}
}

func TestCompactKeepsDeltasRight(t *testing.T) {
	a := newTestApp()
	e := addTestNode(a, "a:1")
	for i := range 5000 {
		e.info.Type = fmt.Sprint(i)
		a.nodeChanged(e)
		a.setKey("hot", int16(i))
	}
	a.setKey("cold", 1)
	v := a.ver
	a.setKey("cold", 2)
	before := len(a.log)
	a.compact()
	if len(a.log) >= before || len(a.log) != a.live() {
		t.Fatalf("log %d -> %d entries, live %d", before, len(a.log), a.live())
	}
	b := decodeParts(t, mustDelta(t, a, v))
	if len(b.Keys) != 1 || b.Keys[0] != (kv{"cold", 2}) || len(b.Nodes) != 0 {
		t.Fatalf("delta after compaction: %+v", b)
	}
}

func mustDelta(t *testing.T, a *appState, v uint64) [][]byte {
	p, ok := a.delta(v)
	if !ok {
		t.Fatal("delta refused")
	}
	return p
}

func TestRecreatedAppNeverReusesVersions(t *testing.T) {
	var clock uint64
	old := newAppState("x", &clock)
	addTestNode(old, "a:1")
	old.setKey("k", 1)
	seen := old.ver
	other := newAppState("y", &clock)
	addTestNode(other, "b:1")
	again := newAppState("x", &clock) // "x" was forgotten and comes back
	for range 10 {
		again.setKey(fmt.Sprint(clock), 1)
	}
	if !again.needsFull(true, seen, again.ver) {
		t.Fatal("a view of the forgotten app must get a full snapshot")
	}
	if again.needsFull(true, again.ver, again.ver) {
		t.Fatal("a current view must not")
	}
	if fresh := newAppState("z", &clock); fresh.needsFull(true, fresh.ver, fresh.ver) {
		t.Fatal("a view of an app with no change yet must not loop on full snapshots")
	}
}
