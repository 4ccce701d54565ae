package rudp

import "github.com/marsmesh/marsmesh/internal/kcp"

// Wire format. Every UDP packet starts with one type byte.
//
//	KCP       [0x01][KCP segments...]                      reliable stream
//	Datagram  [0x02][kind][payload]                        unreliable, whole
//	Fragment  [0x03][kind][id u32][index u16][count u16][part]
//	Batch     [0x04]{[kind][length u16][payload]}          small unreliable messages
//	SYN       [0x10][src inc u64][dst inc u64][dial token u64][resp token u64]
//	SYN-ACK   [0x11] same layout as SYN
//	ACK       [0x15] same layout as SYN
//	PING      [0x12][conv u32][tag u64]
//	FIN       [0x13][conv u32][tag u64]
//	RST       [0x14][conv u32][tag u64]
//	NOSESS    [0x16][conv u32][src inc u64]
//	CAPS      [0x17][conv u32][tag u64][flags][max datagram u32][max segment u32]
//
// See handshake.go for how they are used. With cluster keys every one of
// them travels sealed inside a 0x30 (session) or 0x31 (handshake) packet;
// see seal.go.
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
	pktAck      byte = 0x15
	pktNoSess   byte = 0x16
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
	handshakeSize      = 33 // type, src u64, dst u64, dial token u64, resp token u64
	taggedSize         = 13 // type, conv u32, tag u64 (PING, FIN, RST, NOSESS)
	kcpMTU             = MaxPacketSize - 1
	maxFragments       = (maxFrameSize + MaxSize - 1) / MaxSize
)

// kcpOverhead is the size of a KCP segment header.
const kcpOverhead = kcp.IKCP_OVERHEAD
