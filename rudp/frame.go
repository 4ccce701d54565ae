package rudp

import (
	"encoding/binary"
	"fmt"
)

// frameDecoder cuts the reliable byte stream back into frames. It keeps at
// most one partial frame; a header announcing more than maxFrameSize is a
// protocol error and allocates nothing.
type frameDecoder struct {
	hdr  [frameHeaderSize]byte
	hn   int    // header bytes held
	size int    // body length of the current frame, valid when hn == frameHeaderSize
	body []byte // body bytes held so far
}

// ackNowBit, in a frame's length field, asks the receiver to acknowledge
// the packet at once instead of after ackDelay (SendTracked sets it: its
// sender waits for that acknowledgement).
const ackNowBit = 1 << 31

// frameLength splits a length field into the length and the ack-now flag.
func frameLength(v uint32) (uint32, bool) { return v &^ ackNowBit, v&ackNowBit != 0 }

// maxPrealloc caps how much of an announced body is allocated before its
// bytes arrive (a 64 KiB message with its headers fits); beyond it the
// body grows as data comes in, doubling up to the announced size.
const maxPrealloc = 128 << 10

// feed consumes p and calls emit for every complete frame, in order. The
// payload handed to emit is owned by the callee. It returns an error
// wrapping ErrProtocol on an impossible header; the decoder is then unusable.
func (d *frameDecoder) feed(p []byte, emit func(kind byte, payload []byte, ackNow bool)) error {
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
					emit(p[4], body, now)
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
		want := d.size - len(d.body)
		c := min(want, len(p))
		if len(d.body)+c > cap(d.body) {
			nb := make([]byte, len(d.body), min(d.size, max(2*cap(d.body), len(d.body)+c)))
			copy(nb, d.body)
			d.body = nb
		}
		d.body = append(d.body, p[:c]...)
		p = p[c:]
		if len(d.body) == d.size {
			body := d.body
			d.body, d.hn, d.size = nil, 0, 0
			_, now := frameLength(binary.BigEndian.Uint32(d.hdr[:]))
			emit(d.hdr[4], body, now)
		}
	}
	return nil
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
