package rudp

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// frameDecoder cuts the reliable byte stream back into frames. It keeps at
// most one partial frame; a header announcing more than maxFrameSize is a
// protocol error and allocates nothing.
//
// A large body is held in pieces that are never copied again while it
// arrives (the decoder runs under the session's lock): the first piece is
// at most maxPrealloc, each next one at most what is held already and at
// most maxPiece, so what is allocated stays within twice what arrived.
// The deliverer joins the pieces outside the lock (frame.bytes).
type frameDecoder struct {
	hdr   [frameHeaderSize]byte
	hn    int      // header bytes held
	size  int      // body length of the current frame, valid when hn == frameHeaderSize
	parts [][]byte // full pieces of the body
	held  int      // bytes in parts
	body  []byte   // the piece being filled
}

// ackNowBit, in a frame's length field, asks the receiver to acknowledge
// the packet at once instead of after ackDelay (SendTracked sets it: its
// sender waits for that acknowledgement).
const ackNowBit = 1 << 31

// frameLength splits a length field into the length and the ack-now flag.
func frameLength(v uint32) (uint32, bool) { return v &^ ackNowBit, v&ackNowBit != 0 }

// maxPrealloc caps how much of an announced body is allocated before its
// bytes arrive (a 64 KiB message with its headers fits).
const maxPrealloc = 128 << 10

// maxPiece caps the pieces a large body is held in.
const maxPiece = 1 << 20

// feed consumes p and calls emit for every complete frame, in order. The
// frame handed to emit is owned by the callee. It returns an error
// wrapping ErrProtocol on an impossible header; the decoder is then unusable.
func (d *frameDecoder) feed(p []byte, emit func(f frame, ackNow bool)) error {
	for len(p) > 0 {
		if d.hn < frameHeaderSize {
			// Fast path: a whole frame sits in p.
			if d.hn == 0 && len(p) >= frameHeaderSize {
				n, now := frameLength(binary.BigEndian.Uint32(p))
				if n > maxFrameSize {
					return fmt.Errorf("%w: frame announces %d bytes, limit %d", ErrProtocol, n, maxFrameSize)
				}
				if int(n) <= len(p)-frameHeaderSize {
					src := p[frameHeaderSize : frameHeaderSize+int(n)]
					body := make([]byte, len(src))
					copy(body, src) // make+copy: not cleared first
					emit(frame{kind: p[4], payload: body}, now)
					p = p[frameHeaderSize+int(n):]
					continue
				}
			}
			c := copy(d.hdr[d.hn:], p)
			d.hn += c
			p = p[c:]
			if d.hn < frameHeaderSize {
				return nil
			}
			n, _ := frameLength(binary.BigEndian.Uint32(d.hdr[:]))
			if n > maxFrameSize {
				return fmt.Errorf("%w: frame announces %d bytes, limit %d", ErrProtocol, n, maxFrameSize)
			}
			d.size = int(n)
			d.body = make([]byte, 0, min(d.size, maxPrealloc))
		}
		if len(d.body) == cap(d.body) && d.held+len(d.body) < d.size {
			// The piece is full: start the next one.
			d.parts = append(d.parts, d.body)
			d.held += len(d.body)
			d.body = make([]byte, 0, min(d.size-d.held, d.held, maxPiece))
		}
		c := min(cap(d.body)-len(d.body), len(p))
		d.body = append(d.body, p[:c]...)
		p = p[c:]
		if d.held+len(d.body) == d.size {
			f := frame{kind: d.hdr[4], payload: d.body}
			if d.parts != nil {
				f = frame{kind: d.hdr[4], parts: append(d.parts, d.body)}
			}
			_, now := frameLength(binary.BigEndian.Uint32(d.hdr[:]))
			d.parts, d.held, d.body, d.hn, d.size = nil, 0, nil, 0, 0
			emit(f, now)
		}
	}
	return nil
}

// heldBytes is how much memory the decoder holds for a partial frame.
func (d *frameDecoder) heldBytes() int {
	n := cap(d.body)
	for _, b := range d.parts {
		n += cap(b)
	}
	return n
}

// bytes returns the frame's body in one slice, joining its pieces (done by
// the deliverer, outside the session's lock).
func (f *frame) bytes() []byte {
	if f.parts != nil {
		f.payload, f.parts = bytes.Join(f.parts, nil), nil
	}
	return f.payload
}

// appendFrame appends one frame holding the concatenation of parts.
func appendFrame(b []byte, kind byte, size int, parts [][]byte, ackNow bool) []byte {
	b = binary.BigEndian.AppendUint32(b, frameField(size, ackNow))
	b = append(b, kind)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// frameField is the length field of a frame.
func frameField(size int, ackNow bool) uint32 {
	if ackNow {
		return uint32(size) | ackNowBit
	}
	return uint32(size)
}
