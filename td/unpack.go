package td

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// Reasons a value fails to decode; Unpack wraps them in ErrMalformed together
// with the property they were found in.
var (
	errTruncated = errors.New("truncated")
	errOverlong  = errors.New("varint not in its shortest form")
	errOverflow  = errors.New("varint overflows 64 bits")
	errRange     = errors.New("integer out of range for the type")
	errBool      = errors.New("bool byte is neither 0 nor 1")
	errPadding   = errors.New("unused bits are not zero")
	errLength    = errors.New("length or count exceeds the remaining input")
)

// Unpack decodes a record packed by Pack or AppendPack with the same schema,
// replacing whatever the record held: properties absent from data are unset
// afterwards. Decoded values are copied out of data, which the caller may reuse
// as soon as Unpack returns. The strings and byte slices of one Unpack share a
// single block about the size of data, which stays alive while any of them does.
//
// Input that is truncated, has bytes left over, is not in canonical form or does
// not fit the schema returns an error wrapping ErrMalformed and leaves the record
// with no property set. No input makes Unpack panic, and memory allocated is
// bounded by a small multiple of len(data): every length and count is checked
// against the bytes left before anything is allocated for it.
//
// The wire form carries no names or types, so bytes packed with a different
// schema may decode without error into nonsense; sender and receiver must agree
// on the schema.
func (t *TransportData) Unpack(data []byte) error {
	t.Reset()
	if err := t.unpack(data); err != nil {
		t.Reset()
		return err
	}
	return nil
}

func (t *TransportData) unpack(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty input", ErrMalformed)
	}
	if data[0] != formatVersion {
		return fmt.Errorf("%w: unknown format version %d", ErrMalformed, data[0])
	}
	def := t.def
	end := 1 + def.bitmapLen
	if len(data) < end {
		return fmt.Errorf("%w: presence bitmap truncated", ErrMalformed)
	}
	bitmap := data[1:end]
	if used := len(def.props) % 8; used != 0 && bitmap[len(bitmap)-1]>>used != 0 {
		return fmt.Errorf("%w: presence bitmap marks properties the schema lacks", ErrMalformed)
	}
	d := decoder{buf: data, off: end}
	for i := range t.slots {
		if bitmap[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		p, start := &def.props[i], d.off
		if err := d.value(p.Type, &t.slots[i]); err != nil {
			return fmt.Errorf("%w: property %q (%v) at offset %d: %v", ErrMalformed, p.Name, p.Type, start, err)
		}
	}
	if d.off != len(data) {
		return fmt.Errorf("%w: %d bytes left over after the last property", ErrMalformed, len(data)-d.off)
	}
	return nil
}

// decoder reads values from buf starting at off.
type decoder struct {
	buf []byte
	off int
	// arena receives copies of string and byte payloads. It is allocated at the
	// first payload with room for all the input left, so one allocation serves
	// the whole record and its size never exceeds the input's.
	arena []byte
}

func (d *decoder) left() int { return len(d.buf) - d.off }

func (d *decoder) value(typ Type, s *slot) error {
	switch typ {
	case Bool:
		b, err := d.byte()
		if err == nil && b > 1 {
			err = errBool
		}
		*s = slot{bits: uint64(b), set: true}
		return err
	case Int8:
		b, err := d.byte()
		*s = slot{bits: uint64(int8(b)), set: true}
		return err
	case Uint8:
		b, err := d.byte()
		*s = slot{bits: uint64(b), set: true}
		return err
	case Int, Int64:
		v, err := d.varint()
		*s = slot{bits: uint64(v), set: true}
		return err
	case Int16:
		v, err := varintAs[int16](d)
		*s = slot{bits: uint64(v), set: true}
		return err
	case Int32:
		v, err := varintAs[int32](d)
		*s = slot{bits: uint64(v), set: true}
		return err
	case Uint16:
		v, err := uvarintAs[uint16](d)
		*s = slot{bits: uint64(v), set: true}
		return err
	case Uint32:
		v, err := uvarintAs[uint32](d)
		*s = slot{bits: uint64(v), set: true}
		return err
	case Uint64:
		v, err := d.uvarint()
		*s = slot{bits: v, set: true}
		return err
	case Float32:
		if d.left() < 4 {
			return errTruncated
		}
		*s = slot{bits: uint64(binary.LittleEndian.Uint32(d.buf[d.off:])), set: true}
		d.off += 4
		return nil
	case Float64:
		if d.left() < 8 {
			return errTruncated
		}
		*s = slot{bits: binary.LittleEndian.Uint64(d.buf[d.off:]), set: true}
		d.off += 8
		return nil
	case String:
		v, err := d.string()
		s.setString(v)
		return err
	case Bytes, Uint8Array:
		v, err := d.bytes()
		setSlot(s, v)
		return err
	case StringArray:
		n, err := d.count(1)
		if err != nil {
			return err
		}
		vs := make([]string, n)
		for i := range vs {
			if vs[i], err = d.string(); err != nil {
				return err
			}
		}
		setSlot(s, vs)
		return nil
	case BytesArray:
		n, err := d.count(1)
		if err != nil {
			return err
		}
		vs := make([][]byte, n)
		for i := range vs {
			if vs[i], err = d.bytes(); err != nil {
				return err
			}
		}
		setSlot(s, vs)
		return nil
	case BoolArray:
		return d.boolArray(s)
	case Int8Array:
		n, err := d.count(1)
		if err != nil {
			return err
		}
		vs := make([]int8, n)
		for i, b := range d.buf[d.off : d.off+n] {
			vs[i] = int8(b)
		}
		d.off += n
		setSlot(s, vs)
		return nil
	case Int16Array:
		return decodeVarints[int16](d, s)
	case Int32Array:
		return decodeVarints[int32](d, s)
	case IntArray, Int64Array:
		return decodeVarints[int64](d, s)
	case Uint16Array:
		return decodeUvarints[uint16](d, s)
	case Uint32Array:
		return decodeUvarints[uint32](d, s)
	case Uint64Array:
		return decodeUvarints[uint64](d, s)
	case Float32Array:
		n, err := d.count(4) // the count check also keeps every read in bounds
		if err != nil {
			return err
		}
		vs := make([]float32, n)
		for i := range vs {
			vs[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.buf[d.off:]))
			d.off += 4
		}
		setSlot(s, vs)
		return nil
	case Float64Array:
		n, err := d.count(8)
		if err != nil {
			return err
		}
		vs := make([]float64, n)
		for i := range vs {
			vs[i] = math.Float64frombits(binary.LittleEndian.Uint64(d.buf[d.off:]))
			d.off += 8
		}
		setSlot(s, vs)
		return nil
	}
	return fmt.Errorf("unknown type %v", typ) // unreachable: schemas hold valid types
}

// Array decoders read the count first and check it against the input left
// before allocating: each element takes at least one byte on the wire, so a
// forged count cannot make them allocate more than size(T) bytes per input byte.
// (They take no element-decoding func value: calling one would make the
// decoder escape to the heap.)

func decodeVarints[T int16 | int32 | int64](d *decoder, s *slot) error {
	n, err := d.count(1)
	if err != nil {
		return err
	}
	vs := make([]T, n)
	for i := range vs {
		v, err := d.varint()
		if err != nil {
			return err
		}
		if int64(T(v)) != v {
			return errRange
		}
		vs[i] = T(v)
	}
	setSlot(s, vs)
	return nil
}

func decodeUvarints[T uint16 | uint32 | uint64](d *decoder, s *slot) error {
	n, err := d.count(1)
	if err != nil {
		return err
	}
	vs := make([]T, n)
	for i := range vs {
		v, err := d.uvarint()
		if err != nil {
			return err
		}
		if uint64(T(v)) != v {
			return errRange
		}
		vs[i] = T(v)
	}
	setSlot(s, vs)
	return nil
}

// count reads an array count or a byte length and checks that n elements of at
// least minSize bytes each fit in the input left.
func (d *decoder) count(minSize int) (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(d.left()/minSize) {
		return 0, errLength
	}
	return int(n), nil
}

func (d *decoder) byte() (byte, error) {
	if d.off >= len(d.buf) {
		return 0, errTruncated
	}
	b := d.buf[d.off]
	d.off++
	return b, nil
}

// uvarint reads an unsigned varint in the shortest form AppendUvarint writes.
func (d *decoder) uvarint() (uint64, error) {
	if d.off < len(d.buf) && d.buf[d.off] < 0x80 {
		d.off++
		return uint64(d.buf[d.off-1]), nil
	}
	var x uint64
	for i := 0; ; i++ {
		if d.off >= len(d.buf) {
			return 0, errTruncated
		}
		b := d.buf[d.off]
		d.off++
		if i == 9 && b > 1 {
			return 0, errOverflow // a tenth byte holds only bit 63
		}
		if b < 0x80 {
			if b == 0 {
				return 0, errOverlong // i > 0 here: the fast path took single bytes
			}
			return x | uint64(b)<<(7*i), nil
		}
		x |= uint64(b&0x7f) << (7 * i)
	}
}

// varint reads a zigzag-encoded signed varint.
func (d *decoder) varint() (int64, error) {
	u, err := d.uvarint()
	return int64(u>>1) ^ -int64(u&1), err
}

func varintAs[T int16 | int32](d *decoder) (T, error) {
	v, err := d.varint()
	if err == nil && int64(T(v)) != v {
		err = errRange
	}
	return T(v), err
}

func uvarintAs[T uint16 | uint32](d *decoder) (T, error) {
	v, err := d.uvarint()
	if err == nil && uint64(T(v)) != v {
		err = errRange
	}
	return T(v), err
}

// bytes reads a length-prefixed byte string and returns a copy of it in the
// arena, with its capacity cut so appending to it cannot overwrite a neighbour.
func (d *decoder) bytes() ([]byte, error) {
	n, err := d.count(1)
	if err != nil || n == 0 {
		return nil, err
	}
	if cap(d.arena)-len(d.arena) < n {
		d.arena = make([]byte, 0, d.left())
	}
	start := len(d.arena)
	d.arena = append(d.arena, d.buf[d.off:d.off+n]...)
	d.off += n
	return d.arena[start:len(d.arena):len(d.arena)], nil
}

// string reads a length-prefixed string. Its bytes live in the arena, in a
// region no []byte handed out refers to, so the string cannot change.
func (d *decoder) string() (string, error) {
	b, err := d.bytes()
	if len(b) == 0 {
		return "", err
	}
	return unsafe.String(&b[0], len(b)), err
}

func (d *decoder) boolArray(s *slot) error {
	n, err := d.uvarint()
	if err != nil {
		return err
	}
	if n > uint64(d.left())*8 {
		return errLength
	}
	nb := (int(n) + 7) / 8
	if nb > d.left() {
		return errLength
	}
	packed := d.buf[d.off : d.off+nb]
	if used := n % 8; used != 0 && packed[nb-1]>>used != 0 {
		return errPadding
	}
	vs := make([]bool, n)
	for i := range vs {
		vs[i] = packed[i/8]&(1<<(i%8)) != 0
	}
	d.off += nb
	setSlot(s, vs)
	return nil
}
