package kcp

import (
	"encoding/binary"
	"testing"
)

func ackSeg(conv, sn, una uint32, wnd uint16) []byte {
	p := make([]byte, IKCP_OVERHEAD)
	binary.LittleEndian.PutUint32(p, conv)
	p[4] = IKCP_CMD_ACK
	binary.LittleEndian.PutUint16(p[6:], wnd)
	binary.LittleEndian.PutUint32(p[8:], clock())
	binary.LittleEndian.PutUint32(p[12:], sn)
	binary.LittleEndian.PutUint32(p[16:], una)
	return p
}

// TestInputAllOrNothing: a packet with one bad segment is refused whole:
// the good segments before it are not applied.
func TestInputAllOrNothing(t *testing.T) {
	for name, bad := range map[string]func([]byte) []byte{
		"unknown command": func(p []byte) []byte { p[4] = 99; return p },
		"other conv":      func(p []byte) []byte { binary.LittleEndian.PutUint32(p, 8); return p },
		"too long":        func(p []byte) []byte { binary.LittleEndian.PutUint32(p[20:], 1000); return p },
	} {
		t.Run(name, func(t *testing.T) {
			k := NewKCP(7)
			k.WndSize(32, 32)
			p := append(pushSeg(7, 0, 0, []byte("good")), bad(pushSeg(7, 1, 0, []byte("bad")))...)
			if _, err := k.Input(p); err == nil {
				t.Fatal("accepted")
			}
			if k.rcv_nxt != 0 || len(k.acklist) != 0 {
				t.Fatalf("applied in part: rcv_nxt %d, %d acks owed", k.rcv_nxt, len(k.acklist))
			}
		})
	}
	if _, err := NewKCP(7).Input(make([]byte, IKCP_OVERHEAD-1)); err != ErrShort {
		t.Fatalf("short packet: %v", err)
	}
}

// TestInputInfo: what Input reports, and that it sends nothing itself.
func TestInputInfo(t *testing.T) {
	k, out := sender(t)
	k.Send([]byte("one"))
	k.Send([]byte("two"))
	k.Flush(IKCP_FLUSH_FULL, out) // sn 0 and 1 in flight

	// Data owes acknowledgements; it does not ask for a flush by itself.
	info, err := k.Input(pushSeg(7, 0, 0, []byte("in")))
	if err != nil || !info.OwesAcks || info.Flush != 0 || info.Acked != 0 || info.Window != 128 {
		t.Fatalf("data: %+v, %v", info, err)
	}
	// A pure acknowledgement of sn 0 (una 1) owes nothing; nothing is
	// queued, so no flush: the ack owed waits for data to carry it.
	info, _ = k.Input(ackSeg(7, 0, 1, 100))
	if info.OwesAcks || info.Acked != 1 || info.Window != 100 || info.Flush != 0 {
		t.Fatalf("ack: %+v", info)
	}
	// With data queued, the window slid: flush it now.
	k.Send([]byte("three"))
	info, _ = k.Input(ackSeg(7, 1, 2, 100))
	if info.Acked != 1 || info.Flush != IKCP_FLUSH_FULL {
		t.Fatalf("ack with data queued: %+v", info)
	}
	// A window probe owes an answer.
	probe := ackSeg(7, 0, 2, 100)
	probe[4] = IKCP_CMD_WASK
	if info, _ = k.Input(probe); !info.OwesAcks {
		t.Fatalf("probe: %+v", info)
	}
	if len(out.pkts) != 1 {
		t.Fatalf("Input sent %d packets itself", len(out.pkts)-1)
	}
	// A packet's worth of acks owed: flush them now (ack clocking).
	r := NewKCP(7)
	r.WndSize(128, 128)
	r.SetMtu(IKCP_OVERHEAD * 4)
	for sn := range uint32(4) {
		info, _ = r.Input(pushSeg(7, sn, 0, []byte("x")))
	}
	if info.Flush != IKCP_FLUSH_ACKONLY {
		t.Fatalf("acks for a full packet owed: %+v", info)
	}
}

// TestFlushInfo: what Flush reports about what it sent.
func TestFlushInfo(t *testing.T) {
	k, out := sender(t)
	if info := k.Flush(IKCP_FLUSH_FULL, out); info.Packets != 0 || info.Data || len(out.pkts) != 0 {
		t.Fatalf("idle flush: %+v, %d packets", info, len(out.pkts))
	}
	k.Send([]byte("a"))
	k.Send([]byte("b"))
	info := k.Flush(IKCP_FLUSH_FULL, out)
	if info.Packets != 1 || !info.Data || info.Resent != 0 || info.Next <= 0 {
		t.Fatalf("first send: %+v", info)
	}
	testNow += 10_000 * ms
	if info = k.Flush(IKCP_FLUSH_FULL, out); !info.Data || info.Resent != 2 {
		t.Fatalf("after the timers expired: %+v", info)
	}
	k.Input(pushSeg(7, 0, 0, []byte("x")))
	if info = k.Flush(IKCP_FLUSH_ACKONLY, out); info.Data || info.Packets != 1 {
		t.Fatalf("acks only: %+v", info)
	}
	if sn, sent, ok := k.Head(); !ok || sn != 0 || sent != 2 {
		t.Fatalf("Head: %d sent %d, %v", sn, sent, ok)
	}
}
