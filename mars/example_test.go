package mars_test

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// Start a MARS server, then a node: one rudp transport whose MARS-kind
// messages go to the client, as the mesh layer wires it.
func Example() {
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	var client atomic.Pointer[mars.Client]
	tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{
		OnMessage: func(from netip.AddrPort, kind byte, payload []byte, reliable bool) {
			if c := client.Load(); c != nil && mars.IsMarsKind(kind) {
				c.HandleMessage(from, kind, payload, reliable)
			}
		},
		OnPeerDown: func(addr netip.AddrPort, _ error) {
			if c := client.Load(); c != nil {
				c.HandlePeerDown(addr)
			}
		},
	})
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	c, err := mars.NewClient(mars.ClientConfig{
		Transport: tr,
		MarsAddr:  srv.Addr().String(),
		App:       "my-game",
		Type:      "UDP",
		Role:      "UDP",
		EndPoint:  "203.0.113.7:7100",
		Values:    map[string]interface{}{"region": "eu-west"},
	})
	if err != nil {
		panic(err)
	}
	client.Store(c)
	updated := make(chan struct{}, 1)
	c.OnSharedDataUpdate(func(key string, v int16) {
		fmt.Println("shared data:", key, v)
		updated <- struct{}{}
	})
	c.Start()
	defer c.Close()

	<-c.Ready()
	self, _ := c.View().Node(c.Addr())
	fmt.Println("listed:", self.Type, self.Status, self.Self, self.Values["region"])

	c.SetSharedData("open-rooms", 12)
	<-updated // every node's view gets it; this one within milliseconds
	fmt.Println("in touch:", c.InTouch())
	// Output:
	// listed: UDP online true eu-west
	// shared data: open-rooms 12
	// in touch: true
}
