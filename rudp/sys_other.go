//go:build !(linux && (amd64 || arm64))

package rudp

import (
	"errors"
	"net"
	"net/netip"
)

// Without raw socket calls (sys_linux.go) the transport uses x/net's
// batch calls on an IPv4 socket, the net package's otherwise.

type rawSock struct{}

type rawReader struct{}

type rawWriter struct{}

type wrote struct{ pkts, bytes, failed int }

var errNoRawCalls = errors.New("rudp: no raw socket calls on this platform")

func newRawSock(*net.UDPConn) *rawSock { return nil }

func (*rawSock) newReader(n, size int) *rawReader { return nil }

func (*rawReader) serve([][]byte, []netip.AddrPort, func(), func(int) bool) error {
	return errNoRawCalls
}

func (*rawSock) write(_ *rawWriter, pkts [][]byte, _ netip.AddrPort) (wrote, error) {
	return wrote{failed: len(pkts)}, errNoRawCalls
}

func (*rawSock) unread() bool { return false }
