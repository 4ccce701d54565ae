package rudp

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

var datagramPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxPacketSize); return &b }}

// USend sends one unreliable message (the concatenation of parts, at most
// MaxMessageSize bytes): never retransmitted, no session needed (with
// Config.Keys it is sealed on the peer's session, which it dials if
// needed; see the package doc; without keys a stream of them to a peer
// dials one in the background so that they share large datagrams). Above MaxSize bytes it is split into
// parts that the receiver reassembles; if any part is lost the whole
// message is dropped.
func (t *Transport) USend(to netip.AddrPort, kind byte, parts ...[]byte) error {
	size, err := messageSize(parts)
	if err != nil {
		return err
	}
	return t.usend(to, kind, size, parts)
}

// USendWithHeader is USend for an upper layer's header (at most
// MaxHeaderSize bytes) and a body of at most MaxMessageSize bytes.
func (t *Transport) USendWithHeader(to netip.AddrPort, kind byte, header, body []byte) error {
	if err := checkHeaderBody(header, body); err != nil {
		return err
	}
	return t.usend(to, kind, len(header)+len(body), [][]byte{header, body})
}

func (t *Transport) usend(to netip.AddrPort, kind byte, size int, parts [][]byte) error {
	if t.closing.Load() {
		return ErrClosed
	}
	if err := checkAddr(to); err != nil {
		return err
	}
	if size <= maxBatchedPayload {
		return t.usendSmall(to, kind, size, parts) // ubatch.go
	}
	bp := datagramPool.Get().(*[]byte)
	defer datagramPool.Put(bp)
	count := (size + MaxSize - 1) / MaxSize
	id := t.fragID.Add(1)
	t.stats.splits.Add(1)
	cur := append([][]byte(nil), parts...)
	for i := 0; i < count; i++ {
		b := append((*bp)[:0], pktFragment, kind)
		b = binary.BigEndian.AppendUint32(b, id)
		b = binary.BigEndian.AppendUint16(b, uint16(i))
		b = binary.BigEndian.AppendUint16(b, uint16(count))
		want := MaxSize
		for want > 0 && len(cur) > 0 {
			n := min(want, len(cur[0]))
			b = append(b, cur[0][:n]...)
			want -= n
			if cur[0] = cur[0][n:]; len(cur[0]) == 0 {
				cur = cur[1:]
			}
		}
		if err := t.uwrite(b, to); err != nil {
			return err
		}
	}
	return nil
}
