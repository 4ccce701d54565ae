// Package meshtest runs a marsmesh cluster inside a test: a MARS and N
// nodes (mesh.New) on an in-memory network that can lose, delay, duplicate
// and reorder packets (rudp/faultnet), or on UDP sockets on 127.0.0.1. A
// game team uses it to test its own handlers and how they live through
// churn, without sleeps:
//
//   - New(t, Options{Nodes: 3}) starts MARS and three nodes and returns
//     once every node lists all three online. Options.Init registers a
//     node's handlers before anyone can send to it; Add starts more nodes.
//   - Kill stops a node as a crash would (no goodbye: the others find out
//     by its silence), Shutdown drains it and lets it leave, Restart starts
//     a new incarnation on the same address.
//   - Cut (one way), Partition (both ways) and Isolate (from everyone,
//     MARS included) drop packets between nodes until Heal; Network sets
//     the in-memory network's faults per link.
//   - Eventually waits on any condition; WaitState waits until a node
//     lists another in a membership state, WaitSettled until every node
//     lists exactly the running nodes online.
//
// A test of a handler through a crash (example_test.go runs it):
//
//	func TestHelloThroughACrash(t *testing.T) {
//		c := meshtest.New(t, meshtest.Options{
//			Nodes: 3,
//			Init: func(n *mesh.Node) {
//				n.HandleRPC(cmdHello, func(data []byte, from string) ([]byte, error) {
//					return append([]byte("hello "), data...), nil
//				})
//			},
//		})
//		a, b := c.Nodes()[0], c.Nodes()[1]
//		c.Kill(b) // no goodbye: a finds out by b's silence
//		c.WaitState(a, b.GetMyEndPoint(), mesh.StateOffline)
//		b2 := c.Restart(b) // a new incarnation on b's address
//		c.WaitState(a, b2.GetMyEndPoint(), mesh.StateOnline)
//		resp, err := a.SendRPC(cmdHello, b2.GetMyEndPoint(), []byte("again"))
//		// ...
//	}
//
// Everything ends with the test (t.Cleanup): the nodes shut down, MARS
// closes, and the test fails if goroutines of marsmesh (or of handlers
// they run) are still running (with clusters in parallel tests, checked
// when the last of them closes). Nodes sync every 100 ms and find a silent
// peer dead after 1 s; MARS lists a silent node offline after 1 s and
// removes it after 3 s (see Options).
//
// Every packet goes through the cluster's gate (to apply cuts and kills),
// so on loopback the nodes' sockets do without the batched system calls
// a node uses in production.
package meshtest
