// Package testport picks loopback ports for tests that start a process on
// a port chosen in advance, or restart one on the same port.
//
// A port found by binding port 0 lies in the kernel's ephemeral range: once
// the test lets it go (or while the process that owns it restarts), any
// socket bound to port 0 anywhere on the machine (another test package
// running in parallel, an outbound connection) may be given it, and the
// process then fails with "address already in use". Ports from Free lie
// below that range, where only explicit binds land.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowest is the first port Free considers.
const lowest = 10000

// Free returns a port that is free on 127.0.0.1 for both UDP and TCP right
// now and lies below the ephemeral range. If that range starts too low to
// leave room, it falls back to a port the kernel picks.
func Free(t testing.TB) int {
	t.Helper()
	top := ephemeralStart()
	for range 200 {
		if top-lowest < 1000 {
			break
		}
		p := lowest + rand.IntN(top-lowest)
		if free(p) {
			return p
		}
	}
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// free reports whether port can be bound on 127.0.0.1 for UDP and TCP.
func free(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// ephemeralStart is the first port of the kernel's ephemeral range
// (Linux's default when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
