package rudp

import (
	"net"
	"strings"
	"testing"
)

// TestListenScanTakenMessage: the error names the ports actually tried,
// never past 65535.
func TestListenScanTakenMessage(t *testing.T) {
	for _, c := range []struct {
		addr  string
		tries int
	}{{"127.0.0.1:0", 1}, {"127.0.0.1:65535", 1000}} {
		conn, err := net.ListenPacket("udp4", c.addr)
		if err != nil {
			t.Logf("%s: %v (skipped)", c.addr, err)
			continue
		}
		port := conn.LocalAddr().(*net.UDPAddr).Port
		_, err = ListenScan("127.0.0.1", port, c.tries, Config{})
		conn.Close()
		if err == nil || !strings.Contains(err.Error(), "is taken") || strings.Contains(err.Error(), "..") {
			t.Errorf("port %d, %d tries: %v; want \"port ... is taken\"", port, c.tries, err)
		}
	}
}
