package td

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// Wire form of a record (format version 1):
//
//	version   1 byte, formatVersion
//	presence  ceil(n/8) bytes for a schema of n properties; bit i%8 of byte i/8
//	          (least significant bit first) is set when property i is present;
//	          the unused high bits of the last byte are zero
//	values    the present properties, in schema order, with no names or tags
//
// Values:
//
//	Bool                  1 byte, 0 or 1
//	Int8, Uint8           1 byte
//	Int, Int16..Int64     zigzag varint
//	Uint16..Uint64        varint
//	Float32, Float64      4 or 8 bytes, little-endian IEEE 754 bits
//	String, Bytes         varint length, then the bytes
//	arrays                varint count, then the elements encoded as above, except:
//	BoolArray             ceil(count/8) bytes of bits, least significant first,
//	                      unused high bits zero
//	Int8Array, Uint8Array one byte per element
//
// Varints are those of encoding/binary. The encoding is canonical: a record has
// exactly one packed form, and Unpack rejects any other (over-long varints,
// bools other than 0 or 1, stray bits, trailing bytes).

// Size returns the length of the packed record, len(t.Pack()).
func (t *TransportData) Size() int {
	n := 1 + t.def.bitmapLen
	for i := range t.slots {
		if s := &t.slots[i]; s.set {
			n += valueSize(t.def.props[i].Type, s)
		}
	}
	return n
}

// Pack encodes the record into a new slice of exactly the packed size.
func (t *TransportData) Pack() []byte {
	return t.AppendPack(make([]byte, 0, t.Size()))
}

// AppendPack appends the packed record to dst and returns the extended slice.
// Packing into a buffer reused across messages (buf = t.AppendPack(buf[:0]))
// allocates nothing once the buffer is large enough.
func (t *TransportData) AppendPack(dst []byte) []byte {
	dst = append(dst, formatVersion)
	bitmap := len(dst)
	for range t.def.bitmapLen {
		dst = append(dst, 0)
	}
	for i := range t.slots {
		s := &t.slots[i]
		if !s.set {
			continue
		}
		dst[bitmap+i/8] |= 1 << (i % 8)
		dst = appendValue(dst, t.def.props[i].Type, s)
	}
	return dst
}

func appendValue(dst []byte, typ Type, s *slot) []byte {
	switch typ {
	case Bool, Int8, Uint8:
		return append(dst, byte(s.bits))
	case Int, Int16, Int32, Int64:
		return binary.AppendVarint(dst, int64(s.bits))
	case Uint16, Uint32, Uint64:
		return binary.AppendUvarint(dst, s.bits)
	case Float32:
		return binary.LittleEndian.AppendUint32(dst, uint32(s.bits))
	case Float64:
		return binary.LittleEndian.AppendUint64(dst, s.bits)
	case String:
		return append(binary.AppendUvarint(dst, uint64(s.n)), s.str()...)
	case Bytes, Uint8Array:
		return append(binary.AppendUvarint(dst, uint64(s.n)), slotSlice[byte](s)...)
	}

	// Arrays: the count, then the elements.
	dst = binary.AppendUvarint(dst, uint64(s.n))
	switch typ {
	case StringArray:
		for _, v := range slotSlice[string](s) {
			dst = append(binary.AppendUvarint(dst, uint64(len(v))), v...)
		}
	case BytesArray:
		for _, v := range slotSlice[[]byte](s) {
			dst = append(binary.AppendUvarint(dst, uint64(len(v))), v...)
		}
	case BoolArray:
		dst = appendBoolBits(dst, slotSlice[bool](s))
	case Int8Array:
		for _, v := range slotSlice[int8](s) {
			dst = append(dst, byte(v))
		}
	case Int16Array:
		dst = appendVarints(dst, slotSlice[int16](s))
	case Int32Array:
		dst = appendVarints(dst, slotSlice[int32](s))
	case IntArray, Int64Array:
		dst = appendVarints(dst, slotSlice[int64](s))
	case Uint16Array:
		dst = appendUvarints(dst, slotSlice[uint16](s))
	case Uint32Array:
		dst = appendUvarints(dst, slotSlice[uint32](s))
	case Uint64Array:
		dst = appendUvarints(dst, slotSlice[uint64](s))
	case Float32Array:
		for _, v := range slotSlice[float32](s) {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
		}
	case Float64Array:
		for _, v := range slotSlice[float64](s) {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		}
	}
	return dst
}

func appendVarints[T int16 | int32 | int64](dst []byte, vs []T) []byte {
	for _, v := range vs {
		dst = binary.AppendVarint(dst, int64(v))
	}
	return dst
}

func appendUvarints[T uint16 | uint32 | uint64](dst []byte, vs []T) []byte {
	for _, v := range vs {
		dst = binary.AppendUvarint(dst, uint64(v))
	}
	return dst
}

func appendBoolBits(dst []byte, vs []bool) []byte {
	for i := 0; i < len(vs); i += 8 {
		var b byte
		for j, v := range vs[i:min(i+8, len(vs))] {
			b |= byte(b2u(v)) << j
		}
		dst = append(dst, b)
	}
	return dst
}

// valueSize returns the packed length of one present value.
func valueSize(typ Type, s *slot) int {
	switch typ {
	case Bool, Int8, Uint8:
		return 1
	case Int, Int16, Int32, Int64:
		return uvarintLen(zigzag(int64(s.bits)))
	case Uint16, Uint32, Uint64:
		return uvarintLen(s.bits)
	case Float32:
		return 4
	case Float64:
		return 8
	case String, Bytes, Uint8Array, Int8Array:
		return uvarintLen(uint64(s.n)) + s.n
	}

	n := uvarintLen(uint64(s.n))
	switch typ {
	case StringArray:
		for _, v := range slotSlice[string](s) {
			n += uvarintLen(uint64(len(v))) + len(v)
		}
	case BytesArray:
		for _, v := range slotSlice[[]byte](s) {
			n += uvarintLen(uint64(len(v))) + len(v)
		}
	case BoolArray:
		n += (s.n + 7) / 8
	case Int16Array:
		n += varintsSize(slotSlice[int16](s))
	case Int32Array:
		n += varintsSize(slotSlice[int32](s))
	case IntArray, Int64Array:
		n += varintsSize(slotSlice[int64](s))
	case Uint16Array:
		n += uvarintsSize(slotSlice[uint16](s))
	case Uint32Array:
		n += uvarintsSize(slotSlice[uint32](s))
	case Uint64Array:
		n += uvarintsSize(slotSlice[uint64](s))
	case Float32Array:
		n += 4 * s.n
	case Float64Array:
		n += 8 * s.n
	}
	return n
}

func varintsSize[T int16 | int32 | int64](vs []T) int {
	n := 0
	for _, v := range vs {
		n += uvarintLen(zigzag(int64(v)))
	}
	return n
}

func uvarintsSize[T uint16 | uint32 | uint64](vs []T) int {
	n := 0
	for _, v := range vs {
		n += uvarintLen(uint64(v))
	}
	return n
}

// uvarintLen returns the number of bytes binary.AppendUvarint writes for x.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// zigzag maps signed to unsigned integers the way binary.AppendVarint does, so
// that values near zero of either sign stay short.
func zigzag(x int64) uint64 {
	return uint64(x<<1) ^ uint64(x>>63)
}
