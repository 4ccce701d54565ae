package mesh

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// ownerAddrs makes n node addresses like a cluster on loopback has.
func ownerAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.1:%d", 8000+i)
	}
	slices.Sort(out)
	return out
}

// testOwnerSet is the set of addrs, weighted when weights is not nil.
func testOwnerSet(addrs []string, weights []float64) *ownerSet {
	cands := make([]ownerCand, len(addrs))
	for i, a := range addrs {
		cands[i] = ownerCand{addr: a, w: 1}
		if weights != nil {
			cands[i].w = weights[i]
		}
	}
	return newOwnerSet(0, weights != nil, cands)
}

// ownersOf computes the owner of each of keys in s.
func ownersOf(s *ownerSet, keys int) []string {
	out := make([]string, keys)
	for i := range out {
		out[i], _ = s.owner(keyHash(fmt.Sprintf("room/%d", i)), nil)
	}
	return out
}

// The hash is a wire contract: every version of every node must name the
// same owners, so these answers must never change.
func TestOwnerWireContract(t *testing.T) {
	if h := keyHash("room/1"); h != 0xfc1a07601062929b {
		t.Errorf("keyHash(room/1) = %#x", h)
	}
	if s := ownerScore(1, 2); s != 0x0b5181c509f8d8ce {
		t.Errorf("ownerScore(1, 2) = %#x", s)
	}
	addrs := []string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}
	plain, weighted := testOwnerSet(addrs, nil), testOwnerSet(addrs, []float64{1, 2, 3})
	for _, c := range []struct{ key, plain, weighted string }{
		{"", "10.0.0.1:8000", "10.0.0.2:8000"},
		{"room/1", "10.0.0.3:8000", "10.0.0.3:8000"},
		{"room/2", "10.0.0.1:8000", "10.0.0.1:8000"},
		{"match/42", "10.0.0.1:8000", "10.0.0.1:8000"},
		{"player/ada", "10.0.0.2:8000", "10.0.0.2:8000"},
	} {
		p, _ := plain.owner(keyHash(c.key), nil)
		w, _ := weighted.owner(keyHash(c.key), nil)
		if p != c.plain || w != c.weighted {
			t.Errorf("owner of %q: %s, weighted %s; want %s, %s", c.key, p, w, c.plain, c.weighted)
		}
	}
}

// Rendezvous hashing: with 50 nodes each owns about 1/50 of the keys; a
// join moves about 1/51 of them, all to the new node; a leave moves the
// leaver's keys only, each to some other node.
func TestOwnerSpreadAndMoves(t *testing.T) {
	const nodes, keys = 50, 100_000
	addrs := ownerAddrs(nodes + 1)
	base, joined := addrs[:nodes], addrs
	before := ownersOf(testOwnerSet(base, nil), keys)
	share := map[string]int{}
	for _, o := range before {
		share[o]++
	}
	for _, a := range base {
		if c := share[a]; math.Abs(float64(c)-keys/nodes) > 0.2*keys/nodes {
			t.Errorf("%s owns %d keys, want %d within 20%%", a, c, keys/nodes)
		}
	}

	after := ownersOf(testOwnerSet(joined, nil), keys)
	moved := 0
	for i := range after {
		if after[i] != before[i] {
			moved++
			if after[i] != addrs[nodes] {
				t.Fatalf("key %d moved from %s to %s on a join of %s", i, before[i], after[i], addrs[nodes])
			}
		}
	}
	checkMoved(t, "join", moved, keys/nodes)

	leaver := base[17]
	left := ownersOf(testOwnerSet(slices.Delete(slices.Clone(base), 17, 18), nil), keys)
	moved = 0
	for i := range left {
		if left[i] != before[i] {
			moved++
			if before[i] != leaver {
				t.Fatalf("key %d moved from %s, which stayed", i, before[i])
			}
		}
	}
	checkMoved(t, "leave", moved, keys/nodes)
}

func checkMoved(t *testing.T, what string, moved, want int) {
	t.Helper()
	t.Logf("%s: %d keys moved (1/50 = %d)", what, moved, want)
	if math.Abs(float64(moved-want)) > 0.2*float64(want) {
		t.Errorf("%s moved %d keys, want %d within 20%%", what, moved, want)
	}
}

// Weighted: shares follow the weights; equal weights give the unweighted
// owners; changing one node's weight moves keys to or from it only.
func TestOwnerWeighted(t *testing.T) {
	const keys = 100_000
	addrs := ownerAddrs(4)
	weights := []float64{1, 2, 3, 4}
	owners := ownersOf(testOwnerSet(addrs, weights), keys)
	share := map[string]int{}
	for _, o := range owners {
		share[o]++
	}
	for i, a := range addrs {
		want := keys * weights[i] / 10
		if math.Abs(float64(share[a])-want) > 0.05*want {
			t.Errorf("%s (weight %v) owns %d keys, want %.0f within 5%%", a, weights[i], share[a], want)
		}
	}

	equal := ownersOf(testOwnerSet(addrs, []float64{5, 5, 5, 5}), keys)
	if !slices.Equal(equal, ownersOf(testOwnerSet(addrs, nil), keys)) {
		t.Fatal("equal weights name other owners than no weights")
	}

	heavier := ownersOf(testOwnerSet(addrs, []float64{1, 2, 6, 4}), keys)
	for i := range heavier {
		if heavier[i] != owners[i] && heavier[i] != addrs[2] {
			t.Fatalf("key %d moved from %s to %s when %s got heavier", i, owners[i], heavier[i], addrs[2])
		}
	}
}

// Owners ranks the nodes: without the first, the second owns the key.
func TestOwnerRanked(t *testing.T) {
	addrs := ownerAddrs(6)
	s := testOwnerSet(addrs, nil)
	for i := range 200 {
		k := keyHash(fmt.Sprint("k", i))
		r := s.ranked(k, 10)
		if len(r) != len(addrs) {
			t.Fatalf("ranked %d of %d", len(r), len(addrs))
		}
		first, _ := s.owner(k, nil)
		if r[0] != first {
			t.Fatalf("ranked[0] %s, owner %s", r[0], first)
		}
		rest := testOwnerSet(slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == first }), nil)
		if o, _ := rest.owner(k, nil); o != r[1] {
			t.Fatalf("without %s the owner is %s, ranked second %s", first, o, r[1])
		}
		if o, _ := s.owner(k, r[:2]); o != r[2] {
			t.Fatalf("skipping two: %s, want %s", o, r[2])
		}
	}
	if _, ok := testOwnerSet(nil, nil).owner(1, nil); ok {
		t.Fatal("an empty set has an owner")
	}
}

func TestNodeWeight(t *testing.T) {
	for _, c := range []struct {
		v  interface{}
		w  float64
		ok bool
	}{
		{int64(3), 3, true}, {uint64(2), 2, true}, {1.5, 1.5, true}, {int64(0), 0, false}, {int64(-1), -1, false},
		{math.Inf(1), 0, false}, {math.NaN(), 0, false}, {"3", 0, false}, {true, 0, false}, {nil, 0, false},
	} {
		w, ok := nodeWeight(c.v)
		if ok != c.ok || ok && w != c.w {
			t.Errorf("nodeWeight(%v) = %v, %v", c.v, w, ok)
		}
	}
}

// The weighted ranking skips the logarithm of candidates that cannot win;
// it must pick exactly the candidate a full computation picks.
func TestOwnerWeightedPruneExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		nodes := 1 + rng.IntN(60)
		addrs := ownerAddrs(nodes)
		weights := make([]float64, nodes)
		for i := range weights {
			weights[i] = math.Exp(rng.Float64()*20 - 10) // 4.5e-5 .. 2.2e4
			if round%3 == 0 {
				weights[i] = float64(1 + rng.IntN(3)) // ties of weight
			}
		}
		s := testOwnerSet(addrs, weights)
		for range 200 {
			k := rng.Uint64()
			best, bestW := -1, 0.0
			for i, h := range s.hashes {
				if w := weightedScore(ownerScore(k, h), s.weights[i]); best < 0 || w > bestW {
					best, bestW = i, w
				}
			}
			if got := s.rank(k, nil); got != best {
				t.Fatalf("round %d key %#x: ranked %d, full computation %d", round, k, got, best)
			}
		}
	}
}
