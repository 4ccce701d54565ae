package rudp

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/kcp"
)

func TestAckOnly(t *testing.T) {
	seg := func(cmd byte, n int) []byte {
		b := make([]byte, kcpOverhead+n)
		b[4] = cmd
		binary.LittleEndian.PutUint32(b[20:], uint32(n))
		return b
	}
	cat := func(ps ...[]byte) (out []byte) {
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name string
		p    []byte
		want bool
	}{
		{"empty", nil, false},
		{"short", make([]byte, 10), false},
		{"one ack", seg(kcp.IKCP_CMD_ACK, 0), true},
		{"three acks", cat(seg(kcp.IKCP_CMD_ACK, 0), seg(kcp.IKCP_CMD_ACK, 0), seg(kcp.IKCP_CMD_ACK, 0)), true},
		{"ack and push", cat(seg(kcp.IKCP_CMD_ACK, 0), seg(kcp.IKCP_CMD_PUSH, 5)), false},
		{"push", seg(kcp.IKCP_CMD_PUSH, 0), false},
		{"window tell", seg(kcp.IKCP_CMD_WINS, 0), false},
		{"ack with length", seg(kcp.IKCP_CMD_ACK, 3), false},
		{"ack and a tail", append(seg(kcp.IKCP_CMD_ACK, 0), 1, 2), false},
	}
	for _, c := range cases {
		if got := ackOnly(c.p); got != c.want {
			t.Errorf("%s: ackOnly = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestHeldAcksRideOnReplies: in a request/response exchange the acks
// kcp-go's Input flushes at once are held and carried by the reply (or the
// next request), so an exchange costs about two datagrams, not three.
// The bound is loose: an ack whose reply takes longer than ackDelay (a
// loaded machine) still goes alone.
func TestHeldAcksRideOnReplies(t *testing.T) {
	srvBox, cliBox := newInbox(), newInbox()
	var srvp atomic.Pointer[Transport]
	scfg := srvBox.config(Config{})
	scfg.OnMessage = func(from netip.AddrPort, kind byte, payload []byte, _ bool) {
		srvp.Load().SendMsg(context.Background(), from, kind, nil, payload, SendOptions{NoWait: true})
	}
	srv, err := Listen("127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	srvp.Store(srv)
	defer srv.Close()
	replies := make(chan struct{}, 1)
	ccfg := cliBox.config(Config{})
	ccfg.OnMessage = func(netip.AddrPort, byte, []byte, bool) { replies <- struct{}{} }
	cli, err := Listen("127.0.0.1:0", ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	exchange := func(n int) {
		for i := range n {
			if err := cli.Send(srv.LocalAddr(), 7, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-replies:
			case <-time.After(10 * time.Second):
				t.Fatalf("no reply to request %d", i)
			}
		}
	}
	exchange(20) // handshake and warm-up
	time.Sleep(2 * ackDelay)
	before := cli.Stats().PacketsOut + srv.Stats().PacketsOut
	const n = 300
	exchange(n)
	per := float64(cli.Stats().PacketsOut+srv.Stats().PacketsOut-before) / n
	t.Logf("%.2f datagrams per exchange", per)
	if per > 2.6 {
		t.Errorf("%.2f datagrams per request/response exchange, want about 2 (3 without held acks)", per)
	}
}

// FuzzKCPInput: whatever a peer with a session sends, the checks in front
// of kcp-go's Input keep it from panicking (a segment longer than its
// 1,500-byte pool buffers used to).
func FuzzKCPInput(f *testing.F) {
	push := make([]byte, kcpOverhead+4)
	push[4] = kcp.IKCP_CMD_PUSH
	binary.LittleEndian.PutUint32(push[20:], 4)
	f.Add(push)
	big := make([]byte, kcpOverhead+2000)
	big[4] = kcp.IKCP_CMD_PUSH
	binary.LittleEndian.PutUint32(big[20:], 2000)
	f.Add(big)
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) >= 4 {
			binary.LittleEndian.PutUint32(p, 7) // the session's conv
		}
		s := &session{}
		s.kcp = kcp.NewKCP(7, func([]byte, int) {})
		s.kcp.SetMtu(kcpMTU)
		s.kcp.WndSize(1024, 1024)
		s.input(p)
		_ = ackOnly(p)
	})
}
