package mesh

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
)

// Stream frames. A stream is named by the opener's stream ID (sid, unique
// per opening node) and the peer; dir says which end sent a frame, so the
// streams two nodes open to each other never collide.
const (
	dirFromOpener   byte = 0
	dirFromAcceptor byte = 1

	streamOpenHeaderSize      = 15 // sid, cmd, timeout ms, flags
	streamHeaderSize          = 9  // sid, dir
	streamGrantSize           = streamHeaderSize + 16
	streamEndHeaderSize       = streamHeaderSize + 1
	streamFlagFirst      byte = 1 // the open frame carries a first message
)

// End statuses (kindStreamEnd).
const (
	endOK        byte = 0 // the handler returned nil
	endError     byte = 1 // the handler returned an error; text is its message
	endCancelled byte = 2 // the sender's context was cancelled or it closed the stream
	endNoHandler byte = 3
	endReset     byte = 4 // protocol violation (window exceeded, bad frame)
	endRefused   byte = 5 // the node is shutting down
	endTimeout   byte = 6 // the stream's deadline passed
)

// drainingRefusal is the text of an endRefused a draining node answers a
// stream open with, followed by its incarnation in hex: nodes of this
// revision read it as ErrDraining and list the node draining; older ones
// see a refusal with this text.
const drainingRefusal = "node is draining; incarnation "

// parseDrainingRefusal returns the drain notice in a refusal's text.
func parseDrainingRefusal(text []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(text, []byte(drainingRefusal))
	if !ok || len(rest) != 16 {
		return nil, false
	}
	notice, err := hex.DecodeString(string(rest))
	return notice, err == nil
}

type streamOpen struct {
	sid       uint64
	cmd       uint16
	timeoutMs uint32
	flags     byte
}

func appendStreamOpen(b []byte, o streamOpen) []byte {
	b = binary.BigEndian.AppendUint64(b, o.sid)
	b = binary.BigEndian.AppendUint16(b, o.cmd)
	b = binary.BigEndian.AppendUint32(b, o.timeoutMs)
	return append(b, o.flags)
}

func parseStreamOpen(p []byte) (streamOpen, []byte, error) {
	if len(p) < streamOpenHeaderSize {
		return streamOpen{}, nil, errMalformed
	}
	o := streamOpen{
		sid:       binary.BigEndian.Uint64(p),
		cmd:       binary.BigEndian.Uint16(p[8:]),
		timeoutMs: binary.BigEndian.Uint32(p[10:]),
		flags:     p[14],
	}
	if o.flags&^streamFlagFirst != 0 {
		return streamOpen{}, nil, errMalformed
	}
	if o.flags&streamFlagFirst == 0 && len(p) > streamOpenHeaderSize {
		return streamOpen{}, nil, errMalformed
	}
	return o, p[streamOpenHeaderSize:], nil
}

// appendStreamHeader writes the [sid u64][dir u8] every frame but open starts with.
func appendStreamHeader(b []byte, sid uint64, dir byte) []byte {
	return append(binary.BigEndian.AppendUint64(b, sid), dir)
}

// parseStreamHeader reads [sid u64][dir u8] and returns the rest.
func parseStreamHeader(p []byte) (sid uint64, dir byte, rest []byte, err error) {
	if len(p) < streamHeaderSize || p[8] > dirFromAcceptor {
		return 0, 0, nil, errMalformed
	}
	return binary.BigEndian.Uint64(p), p[8], p[streamHeaderSize:], nil
}

// parseStreamGrant reads the body of a grant: cumulative consumed counts.
func parseStreamGrant(rest []byte) (msgs, bytes uint64, err error) {
	if len(rest) != 16 {
		return 0, 0, errMalformed
	}
	return binary.BigEndian.Uint64(rest), binary.BigEndian.Uint64(rest[8:]), nil
}

// parseStreamEnd reads the body of an end: status and text.
func parseStreamEnd(rest []byte) (status byte, text []byte, err error) {
	if len(rest) < 1 || rest[0] > endTimeout {
		return 0, nil, errMalformed
	}
	return rest[0], rest[1:], nil
}
