package meshtest_test

import (
	"testing"

	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/meshtest"
)

const cmdHello uint16 = 1

// A game team's test: every node answers cmdHello; a node crashes and the
// others stop listing it; its replacement answers on the same address.
func TestHelloThroughACrash(t *testing.T) {
	c := meshtest.New(t, meshtest.Options{
		Nodes: 3,
		Init: func(n *mesh.Node) {
			n.HandleRPC(cmdHello, func(data []byte, from string) ([]byte, error) {
				return append([]byte("hello "), data...), nil
			})
		},
	})
	a, b := c.Nodes()[0], c.Nodes()[1]
	if resp, err := a.SendRPC(cmdHello, b.GetMyEndPoint(), []byte("b")); err != nil || string(resp) != "hello b" {
		t.Fatalf("%q, %v", resp, err)
	}

	c.Kill(b) // no goodbye: a finds out by b's silence
	c.WaitState(a, b.GetMyEndPoint(), mesh.StateOffline)

	b2 := c.Restart(b) // a new incarnation on b's address
	c.WaitState(a, b2.GetMyEndPoint(), mesh.StateOnline)
	if resp, err := a.SendRPC(cmdHello, b2.GetMyEndPoint(), []byte("again")); err != nil || string(resp) != "hello again" {
		t.Fatalf("%q, %v", resp, err)
	}
}
