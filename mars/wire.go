package mars

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// This file holds the MessagePack primitives the protocol is built from.
// Protocol messages are positional msgpack arrays written and read by hand:
// it keeps a heartbeat a few dozen bytes, costs no reflection on MARS's hot
// path, and lets the reader bound every length by the bytes actually present
// before it allocates anything. Node metadata values (arbitrary user types)
// are encoded and decoded with github.com/vmihailenco/msgpack/v5 on the
// nodes; MARS only checks their structure (checkValues) and forwards the
// bytes untouched.

// errShort and errType are returned (wrapped) for truncated input and for
// a value of the wrong msgpack type.
var (
	errShort = errors.New("truncated")
	errType  = errors.New("unexpected type")
)

// maxValueDepth bounds the nesting of metadata values.
const maxValueDepth = 32

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(int8(v)))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(int8(v)))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(int16(v)))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(int32(v)))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
	}
}

func appendNil(b []byte) []byte { return append(b, 0xc0) }

// reader walks a msgpack buffer. The first error sticks: later calls return
// zero values, so a decoder can read a whole message and check err once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %w", r.off, err)
	}
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.fail(errShort)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) byte1() byte {
	p := r.next(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *reader) peek() (byte, bool) {
	if r.err != nil || r.off >= len(r.b) {
		return 0, false
	}
	return r.b[r.off], true
}

// isNil consumes a nil if one is next.
func (r *reader) isNil() bool {
	if c, ok := r.peek(); ok && c == 0xc0 {
		r.off++
		return true
	}
	return false
}

func (r *reader) uintN(n int) uint64 {
	p := r.next(n)
	switch len(p) {
	case 1:
		return uint64(p[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(p))
	case 4:
		return uint64(binary.BigEndian.Uint32(p))
	case 8:
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// count reads a container length of n bytes and checks that at least
// minEach*count bytes remain, so no caller allocates for elements that are
// not there.
func (r *reader) count(n int, minEach int) int {
	v := r.uintN(n)
	if r.err != nil {
		return 0
	}
	if v > uint64(r.left()/minEach) {
		r.fail(fmt.Errorf("%w: %d elements announced, %d bytes left", errShort, v, r.left()))
		return 0
	}
	return int(v)
}

// arrayLen reads an array header; its elements are not read.
func (r *reader) arrayLen() int {
	c := r.byte1()
	switch {
	case r.err != nil:
		return 0
	case c&0xf0 == 0x90:
		n := int(c & 0x0f)
		if n > r.left() {
			r.fail(errShort)
			return 0
		}
		return n
	case c == 0xdc:
		return r.count(2, 1)
	case c == 0xdd:
		return r.count(4, 1)
	}
	r.off--
	r.fail(fmt.Errorf("%w: want an array, got 0x%02x", errType, c))
	return 0
}

// mapLen reads a map header; each entry takes at least two bytes.
func (r *reader) mapLen() int {
	c := r.byte1()
	switch {
	case r.err != nil:
		return 0
	case c&0xf0 == 0x80:
		n := int(c & 0x0f)
		if 2*n > r.left() {
			r.fail(errShort)
			return 0
		}
		return n
	case c == 0xde:
		return r.count(2, 2)
	case c == 0xdf:
		return r.count(4, 2)
	}
	r.off--
	r.fail(fmt.Errorf("%w: want a map, got 0x%02x", errType, c))
	return 0
}

// strBytes reads a string header and returns its bytes (aliasing the buffer).
// Strings longer than max are an error.
func (r *reader) strBytes(max int) []byte {
	c := r.byte1()
	var n uint64
	switch {
	case r.err != nil:
		return nil
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n = r.uintN(1)
	case c == 0xda:
		n = r.uintN(2)
	case c == 0xdb:
		n = r.uintN(4)
	default:
		r.off--
		r.fail(fmt.Errorf("%w: want a string, got 0x%02x", errType, c))
		return nil
	}
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.fail(fmt.Errorf("string of %d bytes, limit %d", n, max))
		return nil
	}
	return r.next(int(n))
}

func (r *reader) str(max int) string { return string(r.strBytes(max)) }

// uint reads any non-negative msgpack integer.
func (r *reader) uint() uint64 {
	c := r.byte1()
	switch {
	case r.err != nil:
		return 0
	case c < 0x80:
		return uint64(c)
	case c == 0xcc:
		return r.uintN(1)
	case c == 0xcd:
		return r.uintN(2)
	case c == 0xce:
		return r.uintN(4)
	case c == 0xcf:
		return r.uintN(8)
	case c >= 0xd0 && c <= 0xd3:
		v := r.signed(c)
		if v < 0 {
			r.fail(fmt.Errorf("%w: negative %d where unsigned expected", errType, v))
			return 0
		}
		return uint64(v)
	}
	r.off--
	r.fail(fmt.Errorf("%w: want an unsigned integer, got 0x%02x", errType, c))
	return 0
}

func (r *reader) signed(c byte) int64 {
	switch c {
	case 0xd0:
		return int64(int8(r.uintN(1)))
	case 0xd1:
		return int64(int16(r.uintN(2)))
	case 0xd2:
		return int64(int32(r.uintN(4)))
	default:
		return int64(r.uintN(8))
	}
}

// int reads any msgpack integer that fits an int64.
func (r *reader) int() int64 {
	c, ok := r.peek()
	switch {
	case !ok:
		r.fail(errShort)
		return 0
	case c >= 0xe0:
		r.off++
		return int64(int8(c))
	case c >= 0xd0 && c <= 0xd3:
		r.off++
		return r.signed(c)
	}
	v := r.uint()
	if v > math.MaxInt64 {
		r.fail(fmt.Errorf("%w: %d overflows int64", errType, v))
		return 0
	}
	return int64(v)
}

func (r *reader) int16() int16 {
	v := r.int()
	if v < math.MinInt16 || v > math.MaxInt16 {
		r.fail(fmt.Errorf("%w: %d is not an int16", errType, v))
		return 0
	}
	return int16(v)
}

// skip steps over one value of any type, at most depth containers deep.
func (r *reader) skip(depth int) {
	r.value(depth, false)
}

// value steps over one value. When strictKeys is set, every map key must be
// a string (what msgpack's DecodeMap needs on the nodes).
func (r *reader) value(depth int, strictKeys bool) {
	if depth < 0 {
		r.fail(errors.New("values nested too deeply"))
		return
	}
	c := r.byte1()
	if r.err != nil {
		return
	}
	switch {
	case c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return
	case c&0xf0 == 0x80:
		r.off--
		r.mapEntries(r.mapLen(), depth, strictKeys)
		return
	case c&0xf0 == 0x90:
		r.off--
		r.arrayElems(r.arrayLen(), depth, strictKeys)
		return
	case c&0xe0 == 0xa0:
		r.next(int(c & 0x1f))
		return
	}
	switch c {
	case 0xcc, 0xd0:
		r.next(1)
	case 0xcd, 0xd1:
		r.next(2)
	case 0xca, 0xce, 0xd2:
		r.next(4)
	case 0xcb, 0xcf, 0xd3:
		r.next(8)
	case 0xc4, 0xd9:
		r.next(int(r.uintN(1)))
	case 0xc5, 0xda:
		r.next(int(r.uintN(2)))
	case 0xc6, 0xdb:
		r.next(int(r.uintN(4)))
	case 0xd4:
		r.next(2)
	case 0xd5:
		r.next(3)
	case 0xd6:
		r.next(5)
	case 0xd7:
		r.next(9)
	case 0xd8:
		r.next(17)
	case 0xc7:
		r.next(1 + int(r.uintN(1)))
	case 0xc8:
		r.next(1 + int(r.uintN(2)))
	case 0xc9:
		r.next(1 + int(r.uintN(4)))
	case 0xdc, 0xdd:
		r.off--
		r.arrayElems(r.arrayLen(), depth, strictKeys)
	case 0xde, 0xdf:
		r.off--
		r.mapEntries(r.mapLen(), depth, strictKeys)
	default: // 0xc1 is never used
		r.off--
		r.fail(fmt.Errorf("%w: invalid code 0x%02x", errType, c))
	}
}

func (r *reader) arrayElems(n, depth int, strictKeys bool) {
	for i := 0; i < n && r.err == nil; i++ {
		r.value(depth-1, strictKeys)
	}
}

func (r *reader) mapEntries(n, depth int, strictKeys bool) {
	for i := 0; i < n && r.err == nil; i++ {
		if strictKeys {
			r.strBytes(math.MaxInt32)
		} else {
			r.value(depth-1, false)
		}
		r.value(depth-1, strictKeys)
	}
}

// rawValues reads node metadata: nil, or a map with string keys whose
// values are any well-formed msgpack, at most maxValueDepth deep and max
// bytes long. It returns the encoded bytes (aliasing the buffer), or nil.
func (r *reader) rawValues(max int) []byte {
	if r.isNil() {
		return nil
	}
	start := r.off
	if c, ok := r.peek(); ok && c&0xf0 != 0x80 && c != 0xde && c != 0xdf {
		r.fail(fmt.Errorf("%w: values must be a map, got 0x%02x", errType, c))
		return nil
	}
	r.value(maxValueDepth, true)
	if r.err != nil {
		return nil
	}
	if r.off-start > max {
		r.fail(fmt.Errorf("values of %d bytes, limit %d", r.off-start, max))
		return nil
	}
	if r.off-start == 1 { // an empty map: store nothing
		return nil
	}
	return r.b[start:r.off]
}

// checkValues reports whether b is a well-formed values map (see rawValues).
func checkValues(b []byte) error {
	r := reader{b: b}
	r.rawValues(len(b))
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	return r.err
}
