package rudp_test

import (
	"fmt"
	"net/netip"

	"github.com/marsmesh/marsmesh/rudp"
)

// Two transports on loopback: one sends a reliable message, the other
// receives it on its read goroutine.
func Example() {
	got := make(chan string, 1)
	b, err := rudp.Listen("127.0.0.1:0", rudp.Config{
		OnMessage: func(from netip.AddrPort, kind byte, payload []byte, reliable bool) {
			got <- fmt.Sprintf("kind %d, %q, reliable %v", kind, payload, reliable)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	a, err := rudp.Listen("127.0.0.1:0", rudp.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	if err := a.Send(b.LocalAddr(), 7, []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-got)
	// Output: kind 7, "hello", reliable true
}
