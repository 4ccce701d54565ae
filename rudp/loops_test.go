package rudp

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
	kcp "github.com/xtaci/kcp-go/v5"
)

// TestSweepDue: the sweep asks to run again after sweepEvery while a
// handshake or data in flight needs watching, and otherwise only when the
// next keepalive or silence limit is due (an idle process sleeps).
func TestSweepDue(t *testing.T) {
	n := faultnet.New(3)
	cfg := Config{RetryInterval: time.Second, RetryTimeout: 3 * time.Second}
	bIn := newInbox()
	a, b := listenMem(t, n, cfg), listenMem(t, n, bIn.config(cfg))
	fast := int64(cfg.withDefaults().sweepEvery())

	// A dial that cannot complete (the path is cut) is retried every sweepEvery.
	n.Partition(a.LocalAddr(), b.LocalAddr())
	if _, err := a.session(b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if now := a.now(); a.sweep(now) > now {
		t.Fatal("a sweep with a handshake under way asks to wait")
	}
	n.Heal(a.LocalAddr(), b.LocalAddr())
	if err := a.Send(b.LocalAddr(), 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == 1 }) {
		t.Fatal("the message did not arrive after the path healed")
	}
	s := a.lookup(b.LocalAddr())
	idle := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.state == stateEstablished && s.queuedLocked() == 0
	}
	waitUntil(t, 5*time.Second, idle)
	now := a.now()
	due := a.sweep(now)
	keepalive := int64(cfg.withDefaults().keepalive())
	if due <= now+fast || due > now+keepalive {
		t.Fatalf("idle: next sweep in %v, want after %v and by %v", time.Duration(due-now), time.Duration(fast), time.Duration(keepalive))
	}
}

// TestOwesAcks: only a packet holding data or a window probe leaves KCP
// owing an answer; pure acknowledgements (and window tells) do not arm
// the delayed-ack timer.
func TestOwesAcks(t *testing.T) {
	seg := func(cmd byte, data int) []byte {
		b := make([]byte, kcpOverhead+data)
		b[4] = cmd
		binary.LittleEndian.PutUint32(b[20:], uint32(data))
		return b
	}
	cat := func(ss ...[]byte) []byte { return bytes.Join(ss, nil) }
	for _, c := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"ack", seg(kcp.IKCP_CMD_ACK, 0), false},
		{"acks and a window tell", cat(seg(kcp.IKCP_CMD_ACK, 0), seg(kcp.IKCP_CMD_ACK, 0), seg(kcp.IKCP_CMD_WINS, 0)), false},
		{"data", seg(kcp.IKCP_CMD_PUSH, 10), true},
		{"acks then data", cat(seg(kcp.IKCP_CMD_ACK, 0), seg(kcp.IKCP_CMD_PUSH, 100)), true},
		{"window probe", seg(kcp.IKCP_CMD_WASK, 0), true},
		{"length past the end", seg(kcp.IKCP_CMD_ACK, 0)[:kcpOverhead-1], false},
		{"bad length", func() []byte { b := seg(kcp.IKCP_CMD_ACK, 0); b[20] = 9; return b }(), true},
	} {
		if got := owesAcks(c.p); got != c.want {
			t.Errorf("%s: owesAcks %v, want %v", c.name, got, c.want)
		}
	}
}
