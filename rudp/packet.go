package rudp

import "encoding/binary"

// Wire format. Every UDP packet starts with one type byte.
//
//	KCP       [0x01][KCP segments...]                      reliable stream
//	Datagram  [0x02][kind][payload]                        unreliable, whole
//	Fragment  [0x03][kind][id u32][index u16][count u16][part]
//	Batch     [0x04]{[kind][length u16][payload]}          small unreliable messages
//	SYN       [0x10][src incarnation u64][dst incarnation u64][conv u32]
//	SYN-ACK   [0x11] same layout as SYN
//	PING      [0x12] same layout
//	FIN       [0x13] same layout
//	RST       [0x14] same layout
//
// Integers are big-endian except inside KCP segments (little-endian, as kcp-go
// writes them). The reliable stream carries frames:
//
//	[length u32][kind][payload]
const (
	pktKCP      byte = 0x01
	pktDatagram byte = 0x02
	pktFragment byte = 0x03
	pktSyn      byte = 0x10
	pktSynAck   byte = 0x11
	pktPing     byte = 0x12
	pktFin      byte = 0x13
	pktRst      byte = 0x14
)

const (
	// MaxMessageSize is the largest message, reliable or not, in bytes.
	MaxMessageSize = 10_000_000
	// MaxHeaderSize is the room SendWithHeader and USendWithHeader give an
	// upper layer's header on top of a MaxMessageSize body.
	MaxHeaderSize = 64 << 10
	// maxFrameSize is the most a frame may carry on the wire.
	maxFrameSize = MaxMessageSize + MaxHeaderSize
	// MaxSize is the largest unreliable message sent as one datagram;
	// larger ones are split into parts of this many bytes.
	MaxSize = 1300
	// MaxPacketSize is the largest UDP payload rudp puts on the wire.
	MaxPacketSize = 1400

	frameHeaderSize    = 5  // length u32 + kind
	fragmentHeaderSize = 10 // type, kind, id u32, index u16, count u16
	controlSize        = 21 // type, src u64, dst u64, conv u32
	kcpMTU             = MaxPacketSize - 1
	maxFragments       = (maxFrameSize + MaxSize - 1) / MaxSize
)

// control is the decoded form of SYN, SYN-ACK, PING, FIN and RST.
type control struct {
	typ      byte
	src, dst uint64 // incarnations: sender's, and what the sender believes ours is
	conv     uint32
}

func (c control) append(b []byte) []byte {
	b = append(b, c.typ)
	b = binary.BigEndian.AppendUint64(b, c.src)
	b = binary.BigEndian.AppendUint64(b, c.dst)
	return binary.BigEndian.AppendUint32(b, c.conv)
}

func parseControl(p []byte) (control, bool) {
	if len(p) != controlSize {
		return control{}, false
	}
	return control{
		typ:  p[0],
		src:  binary.BigEndian.Uint64(p[1:]),
		dst:  binary.BigEndian.Uint64(p[9:]),
		conv: binary.BigEndian.Uint32(p[17:]),
	}, true
}

// convOf derives the KCP conversation id of the session between two
// incarnations. It is symmetric, so both sides compute the same id without
// negotiating, and a restarted peer (new incarnation) gets a new id, which
// makes stale packets from the old session fail the conv check.
func convOf(a, b uint64) uint32 {
	x := a ^ b
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	c := uint32(x) ^ uint32(x>>32)
	if c == 0 {
		c = 1
	}
	return c
}

// kcpConv reads the conversation id of the first segment of a KCP packet.
func kcpConv(seg []byte) (uint32, bool) {
	if len(seg) < 24 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(seg), true
}

// peerWindowClosed reports whether the last KCP segment of a packet
// advertises a zero receive window (the peer paused or is slow to read).
func peerWindowClosed(p []byte) bool {
	closed := false
	for len(p) >= kcpOverhead {
		closed = binary.LittleEndian.Uint16(p[6:]) == 0
		n := int(binary.LittleEndian.Uint32(p[20:]))
		if n < 0 || n > len(p)-kcpOverhead {
			break
		}
		p = p[kcpOverhead+n:]
	}
	return closed
}

// kcpOverhead is the size of a KCP segment header.
const kcpOverhead = 24
