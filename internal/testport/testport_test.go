package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestFree: the port is below the ephemeral range and can be bound.
func TestFree(t *testing.T) {
	for range 20 {
		p := Free(t)
		if top := ephemeralStart(); top-lowest >= 1000 && (p < lowest || p >= top) {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, top)
		}
		c, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
