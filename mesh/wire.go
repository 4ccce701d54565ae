package mesh

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Message kinds on the node's rudp transport. MARS uses 0x40..0x4F; the
// mesh uses the kinds below, so internal traffic never shares a command ID
// space with user handlers.
const (
	kindCommand   byte = 0x01 // [cmd u16][payload]
	kindRequest   byte = 0x02 // [id u64][table u8][cmd u16][timeout ms u32][payload]; timeout: the caller's time left (0: none)
	kindResponse  byte = 0x03 // [id u64][status u8][payload or error text]
	kindCancel    byte = 0x04 // [id u64]
	kindFanout    byte = 0x05 // see fanout.go
	kindFanoutAck byte = 0x06 // [id u64][count u16]{addr}
	kindBatch     byte = 0x07 // {[kind u8][length u32][body]}, see buffer.go

	// Streams, see stream_wire.go. 0x0E..0x0F are reserved for streams.
	kindStreamOpen  byte = 0x08 // [sid u64][cmd u16][timeout ms u32][flags u8][first payload]
	kindStreamData  byte = 0x09 // [sid u64][dir u8][payload]
	kindStreamGrant byte = 0x0A // [sid u64][dir u8][consumed msgs u64][consumed bytes u64]
	kindStreamEOF   byte = 0x0B // [sid u64][dir u8]: the sender's CloseSend
	kindStreamEnd   byte = 0x0C // [sid u64][dir u8][status u8][error text]
	kindStreamWant  byte = 0x0D // [sid u64][dir u8]: the writer waits for credit

	// kindDrain: [incarnation u64]: the sender drains (membership.go).
	kindDrain byte = 0x10

	// kindTrace: the trace context of the message that follows it in a
	// batch (tracing_wire.go); never sent on its own.
	kindTrace byte = 0x3F
)

// Handler tables a request can address.
const (
	tableRPC      byte = 1 // HandleRPC
	tableCommand  byte = 2 // HandleCommand / SetCommandHandler (SendRequest)
	tableInternal byte = 3 // the mesh's own (health check)
)

// Response statuses.
const (
	statusOK        byte = 0
	statusError     byte = 1 // the handler returned an error; payload is its text
	statusNoHandler byte = 2
	statusExpired   byte = 3 // the deadline passed before the handler ran
	statusTooLarge  byte = 4 // the response exceeds MaxMessageSize
	statusDraining  byte = 5 // the node drains and takes no new request; payload: its incarnation u64
)

// Internal commands (tableInternal).
const internalHealth uint16 = 1

const (
	requestHeaderSize  = 15
	responseHeaderSize = 9
)

var errMalformed = errors.New("malformed mesh message")

func appendRequestHeader(b []byte, id uint64, table byte, cmd uint16, timeoutMs uint32) []byte {
	b = binary.BigEndian.AppendUint64(b, id)
	b = append(b, table)
	b = binary.BigEndian.AppendUint16(b, cmd)
	return binary.BigEndian.AppendUint32(b, timeoutMs)
}

type requestHeader struct {
	id        uint64
	table     byte
	cmd       uint16
	timeoutMs uint32
}

func parseRequest(p []byte) (requestHeader, []byte, error) {
	if len(p) < requestHeaderSize {
		return requestHeader{}, nil, errMalformed
	}
	return requestHeader{
		id:        binary.BigEndian.Uint64(p),
		table:     p[8],
		cmd:       binary.BigEndian.Uint16(p[9:]),
		timeoutMs: binary.BigEndian.Uint32(p[11:]),
	}, p[requestHeaderSize:], nil
}

// appendAddr writes an address as [length u8][AddrPort binary].
func appendAddr(b []byte, a netip.AddrPort) []byte {
	at := len(b)
	b = append(b, 0)
	b, _ = a.AppendBinary(b)
	b[at] = byte(len(b) - at - 1)
	return b
}

func readAddr(p []byte) (netip.AddrPort, []byte, error) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return netip.AddrPort{}, nil, errMalformed
	}
	var a netip.AddrPort
	if err := a.UnmarshalBinary(p[1 : 1+int(p[0])]); err != nil || !a.IsValid() {
		return netip.AddrPort{}, nil, errMalformed
	}
	return a, p[1+int(p[0]):], nil
}
