package mesh

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to the mesh's frame decoders (request
// header, fan-out frame and ack, address): none may panic, and whatever
// they accept must be internally consistent.
func FuzzDecode(f *testing.F) {
	var req [requestHeaderSize]byte
	appendRequestHeader(req[:0], 7, tableRPC, 3, 1000)
	f.Add(append(req[:], "payload"...))
	m := &fanMsg{id: 1, cmd: 2, flags: fanReliable, limit: 3, deadline: time.Now().Add(time.Second),
		origin: netip.MustParseAddrPort("127.0.0.1:9000"), payload: []byte("hi")}
	share := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9001"), netip.MustParseAddrPort("[::1]:9002")}
	f.Add(append(fanoutHeader(m, share), m.payload...))
	ack := binary.BigEndian.AppendUint64(nil, 1)
	ack = binary.BigEndian.AppendUint16(ack, 1)
	f.Add(appendAddr(ack, share[0]))
	f.Add(appendAddrList(appendAddrList(binary.BigEndian.AppendUint64(nil, 2), share[:1]), share))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		if h, body, err := parseRequest(p); err == nil && len(body) != len(p)-requestHeaderSize {
			t.Fatalf("request %+v: body of %d bytes from %d", h, len(body), len(p))
		}
		if m, share, err := parseFanout(p); err == nil {
			if m.limit < 1 || len(m.payload) > len(p) || len(share) > len(p)/2 {
				t.Fatalf("fan-out accepted with limit %d, %d payload bytes, %d addresses from %d bytes", m.limit, len(m.payload), len(share), len(p))
			}
			for _, a := range share {
				if !a.IsValid() {
					t.Fatal("invalid address accepted")
				}
			}
		}
		if a, rest, err := readAddr(p); err == nil && (!a.IsValid() || len(rest) >= len(p)) {
			t.Fatalf("address %v accepted, %d of %d bytes left", a, len(rest), len(p))
		}
		if _, failed, refused, err := parseFanoutAck(p); err == nil {
			if len(failed)+len(refused) > len(p)/2 || len(failed) > maxFanoutShare || len(refused) > maxFanoutShare {
				t.Fatalf("ack accepted with %d failed and %d refused from %d bytes", len(failed), len(refused), len(p))
			}
		}
		if m, _, err := parseFanout(p); err == nil && !m.deadline.IsZero() && time.Until(m.deadline) > fanoutTimeout {
			t.Fatalf("fan-out deadline %v past the cap", time.Until(m.deadline))
		}
	})
}
