package mesh

import (
	"fmt"
	"testing"
)

// benchKeys are the keys the Owner benchmarks look up.
var benchKeys = func() []string {
	out := make([]string, 4096)
	for i := range out {
		out[i] = fmt.Sprintf("room/%d", i)
	}
	return out
}()

// BenchmarkOwnerSet is the rendezvous computation alone: hash the key,
// score every candidate, keep the best.
func BenchmarkOwnerSet(b *testing.B) {
	for _, nodes := range []int{10, 50, 200} {
		for _, weighted := range []bool{false, true} {
			var weights []float64
			if weighted {
				weights = make([]float64, nodes)
				for i := range weights {
					weights[i] = float64(1 + i%4)
				}
			}
			s := testOwnerSet(ownerAddrs(nodes), weights)
			b.Run(fmt.Sprintf("nodes=%d/weighted=%v", nodes, weighted), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.owner(keyHash(benchKeys[i%len(benchKeys)]), nil)
					i++
				}
			})
		}
	}
}

// BenchmarkNodeOwner is Node.Owner on a node of a 50-node cluster (all of
// type "room"), from every core at once: lookups per second of one node.
func BenchmarkNodeOwner(b *testing.B) {
	c := newCluster(b, 50, WithType("room"))
	n := c.nodes[0]
	if _, ok := n.Owner("room", "x"); !ok {
		b.Fatal("no owner")
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			n.Owner("room", benchKeys[i%len(benchKeys)])
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}
