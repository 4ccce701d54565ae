package td

import (
	"fmt"
	"math"
)

// TransportData is one record of a schema: each property is either unset or
// holds a value of the property's type. Create it with Definition.New and reuse
// it across messages with Reset or Unpack. It is not safe for concurrent use.
//
// Setters do not copy: a slice (or string) handed to SetAsX is referenced until
// the property is set again, the record is Reset or Unpack is called, so do not
// modify it before Pack. Getters return values the record owns; Unpack gives
// every decoded value fresh memory, so values obtained before a later Reset or
// Unpack stay valid and unchanged.
type TransportData struct {
	def   *Definition
	slots []slot
}

// Definition returns the schema of the record.
func (t *TransportData) Definition() *Definition { return t.def }

// Reset unsets every property, so the record can be filled again.
func (t *TransportData) Reset() {
	clear(t.slots)
}

// Has reports whether name is a property of the schema that is set.
func (t *TransportData) Has(name string) bool {
	i := t.def.lookup(name)
	return i >= 0 && t.slots[i].set
}

// Unset clears one property. It fails with ErrUnknownProperty if the schema has
// no property called name.
func (t *TransportData) Unset(name string) error {
	i := t.def.lookup(name)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrUnknownProperty, name)
	}
	t.slots[i] = slot{}
	return nil
}

// Every setter fails with ErrUnknownProperty if the schema has no property called
// name, and with ErrTypeMismatch if the property has another type; the record is
// then unchanged. Every getter returns the value and true if the property exists
// with that type and is set, and the zero value and false otherwise.

// SetAsString sets a String property.
func (t *TransportData) SetAsString(name string, v string) error {
	s, err := t.slotFor(name, String)
	if err != nil {
		return err
	}
	s.setString(v)
	return nil
}

// GetAsString gets a String property.
func (t *TransportData) GetAsString(name string) (string, bool) {
	if s := t.setSlotFor(name, String); s != nil {
		return s.str(), true
	}
	return "", false
}

// SetAsBool sets a Bool property.
func (t *TransportData) SetAsBool(name string, v bool) error {
	return t.setBits(name, Bool, b2u(v))
}

// GetAsBool gets a Bool property.
func (t *TransportData) GetAsBool(name string) (bool, bool) {
	b, ok := t.getBits(name, Bool)
	return b != 0, ok
}

// SetAsInt sets an Int property (a 64-bit signed integer).
func (t *TransportData) SetAsInt(name string, v int64) error {
	return t.setBits(name, Int, uint64(v))
}

// GetAsInt gets an Int property.
func (t *TransportData) GetAsInt(name string) (int64, bool) {
	b, ok := t.getBits(name, Int)
	return int64(b), ok
}

// SetAsInt8 sets an Int8 property.
func (t *TransportData) SetAsInt8(name string, v int8) error {
	return t.setBits(name, Int8, uint64(v))
}

// GetAsInt8 gets an Int8 property.
func (t *TransportData) GetAsInt8(name string) (int8, bool) {
	b, ok := t.getBits(name, Int8)
	return int8(b), ok
}

// SetAsInt16 sets an Int16 property.
func (t *TransportData) SetAsInt16(name string, v int16) error {
	return t.setBits(name, Int16, uint64(v))
}

// GetAsInt16 gets an Int16 property.
func (t *TransportData) GetAsInt16(name string) (int16, bool) {
	b, ok := t.getBits(name, Int16)
	return int16(b), ok
}

// SetAsInt32 sets an Int32 property.
func (t *TransportData) SetAsInt32(name string, v int32) error {
	return t.setBits(name, Int32, uint64(v))
}

// GetAsInt32 gets an Int32 property.
func (t *TransportData) GetAsInt32(name string) (int32, bool) {
	b, ok := t.getBits(name, Int32)
	return int32(b), ok
}

// SetAsInt64 sets an Int64 property.
func (t *TransportData) SetAsInt64(name string, v int64) error {
	return t.setBits(name, Int64, uint64(v))
}

// GetAsInt64 gets an Int64 property.
func (t *TransportData) GetAsInt64(name string) (int64, bool) {
	b, ok := t.getBits(name, Int64)
	return int64(b), ok
}

// SetAsUint8 sets a Uint8 property.
func (t *TransportData) SetAsUint8(name string, v uint8) error {
	return t.setBits(name, Uint8, uint64(v))
}

// GetAsUint8 gets a Uint8 property.
func (t *TransportData) GetAsUint8(name string) (uint8, bool) {
	b, ok := t.getBits(name, Uint8)
	return uint8(b), ok
}

// SetAsUint16 sets a Uint16 property.
func (t *TransportData) SetAsUint16(name string, v uint16) error {
	return t.setBits(name, Uint16, uint64(v))
}

// GetAsUint16 gets a Uint16 property.
func (t *TransportData) GetAsUint16(name string) (uint16, bool) {
	b, ok := t.getBits(name, Uint16)
	return uint16(b), ok
}

// SetAsUint32 sets a Uint32 property.
func (t *TransportData) SetAsUint32(name string, v uint32) error {
	return t.setBits(name, Uint32, uint64(v))
}

// GetAsUint32 gets a Uint32 property.
func (t *TransportData) GetAsUint32(name string) (uint32, bool) {
	b, ok := t.getBits(name, Uint32)
	return uint32(b), ok
}

// SetAsUint64 sets a Uint64 property.
func (t *TransportData) SetAsUint64(name string, v uint64) error {
	return t.setBits(name, Uint64, v)
}

// GetAsUint64 gets a Uint64 property.
func (t *TransportData) GetAsUint64(name string) (uint64, bool) {
	return t.getBits(name, Uint64)
}

// SetAsFloat32 sets a Float32 property. Every bit pattern, NaN payloads
// included, survives a Pack and Unpack.
func (t *TransportData) SetAsFloat32(name string, v float32) error {
	return t.setBits(name, Float32, uint64(math.Float32bits(v)))
}

// GetAsFloat32 gets a Float32 property.
func (t *TransportData) GetAsFloat32(name string) (float32, bool) {
	b, ok := t.getBits(name, Float32)
	return math.Float32frombits(uint32(b)), ok
}

// SetAsFloat64 sets a Float64 property. Every bit pattern, NaN payloads
// included, survives a Pack and Unpack.
func (t *TransportData) SetAsFloat64(name string, v float64) error {
	return t.setBits(name, Float64, math.Float64bits(v))
}

// GetAsFloat64 gets a Float64 property.
func (t *TransportData) GetAsFloat64(name string) (float64, bool) {
	b, ok := t.getBits(name, Float64)
	return math.Float64frombits(b), ok
}

// SetAsBytes sets a Bytes property. A nil or empty v sets the property to an
// empty value, which is distinct from unset.
func (t *TransportData) SetAsBytes(name string, v []byte) error {
	return setSlice(t, name, Bytes, v)
}

// GetAsBytes gets a Bytes property.
func (t *TransportData) GetAsBytes(name string) ([]byte, bool) {
	return getSlice[byte](t, name, Bytes)
}

// SetAsStringArray sets a StringArray property.
func (t *TransportData) SetAsStringArray(name string, v []string) error {
	return setSlice(t, name, StringArray, v)
}

// GetAsStringArray gets a StringArray property.
func (t *TransportData) GetAsStringArray(name string) ([]string, bool) {
	return getSlice[string](t, name, StringArray)
}

// SetAsBytesArray sets a BytesArray property, for instance a list of records of
// another schema, each packed with Pack.
func (t *TransportData) SetAsBytesArray(name string, v [][]byte) error {
	return setSlice(t, name, BytesArray, v)
}

// GetAsBytesArray gets a BytesArray property.
func (t *TransportData) GetAsBytesArray(name string) ([][]byte, bool) {
	return getSlice[[]byte](t, name, BytesArray)
}

// SetAsBoolArray sets a BoolArray property.
func (t *TransportData) SetAsBoolArray(name string, v []bool) error {
	return setSlice(t, name, BoolArray, v)
}

// GetAsBoolArray gets a BoolArray property.
func (t *TransportData) GetAsBoolArray(name string) ([]bool, bool) {
	return getSlice[bool](t, name, BoolArray)
}

// SetAsIntArray sets an IntArray property.
func (t *TransportData) SetAsIntArray(name string, v []int64) error {
	return setSlice(t, name, IntArray, v)
}

// GetAsIntArray gets an IntArray property.
func (t *TransportData) GetAsIntArray(name string) ([]int64, bool) {
	return getSlice[int64](t, name, IntArray)
}

// SetAsInt8Array sets an Int8Array property.
func (t *TransportData) SetAsInt8Array(name string, v []int8) error {
	return setSlice(t, name, Int8Array, v)
}

// GetAsInt8Array gets an Int8Array property.
func (t *TransportData) GetAsInt8Array(name string) ([]int8, bool) {
	return getSlice[int8](t, name, Int8Array)
}

// SetAsInt16Array sets an Int16Array property.
func (t *TransportData) SetAsInt16Array(name string, v []int16) error {
	return setSlice(t, name, Int16Array, v)
}

// GetAsInt16Array gets an Int16Array property.
func (t *TransportData) GetAsInt16Array(name string) ([]int16, bool) {
	return getSlice[int16](t, name, Int16Array)
}

// SetAsInt32Array sets an Int32Array property.
func (t *TransportData) SetAsInt32Array(name string, v []int32) error {
	return setSlice(t, name, Int32Array, v)
}

// GetAsInt32Array gets an Int32Array property.
func (t *TransportData) GetAsInt32Array(name string) ([]int32, bool) {
	return getSlice[int32](t, name, Int32Array)
}

// SetAsInt64Array sets an Int64Array property.
func (t *TransportData) SetAsInt64Array(name string, v []int64) error {
	return setSlice(t, name, Int64Array, v)
}

// GetAsInt64Array gets an Int64Array property.
func (t *TransportData) GetAsInt64Array(name string) ([]int64, bool) {
	return getSlice[int64](t, name, Int64Array)
}

// SetAsUint8Array sets a Uint8Array property.
func (t *TransportData) SetAsUint8Array(name string, v []uint8) error {
	return setSlice(t, name, Uint8Array, v)
}

// GetAsUint8Array gets a Uint8Array property.
func (t *TransportData) GetAsUint8Array(name string) ([]uint8, bool) {
	return getSlice[uint8](t, name, Uint8Array)
}

// SetAsUint16Array sets a Uint16Array property.
func (t *TransportData) SetAsUint16Array(name string, v []uint16) error {
	return setSlice(t, name, Uint16Array, v)
}

// GetAsUint16Array gets a Uint16Array property.
func (t *TransportData) GetAsUint16Array(name string) ([]uint16, bool) {
	return getSlice[uint16](t, name, Uint16Array)
}

// SetAsUint32Array sets a Uint32Array property.
func (t *TransportData) SetAsUint32Array(name string, v []uint32) error {
	return setSlice(t, name, Uint32Array, v)
}

// GetAsUint32Array gets a Uint32Array property.
func (t *TransportData) GetAsUint32Array(name string) ([]uint32, bool) {
	return getSlice[uint32](t, name, Uint32Array)
}

// SetAsUint64Array sets a Uint64Array property.
func (t *TransportData) SetAsUint64Array(name string, v []uint64) error {
	return setSlice(t, name, Uint64Array, v)
}

// GetAsUint64Array gets a Uint64Array property.
func (t *TransportData) GetAsUint64Array(name string) ([]uint64, bool) {
	return getSlice[uint64](t, name, Uint64Array)
}

// SetAsFloat32Array sets a Float32Array property.
func (t *TransportData) SetAsFloat32Array(name string, v []float32) error {
	return setSlice(t, name, Float32Array, v)
}

// GetAsFloat32Array gets a Float32Array property.
func (t *TransportData) GetAsFloat32Array(name string) ([]float32, bool) {
	return getSlice[float32](t, name, Float32Array)
}

// SetAsFloat64Array sets a Float64Array property.
func (t *TransportData) SetAsFloat64Array(name string, v []float64) error {
	return setSlice(t, name, Float64Array, v)
}

// GetAsFloat64Array gets a Float64Array property.
func (t *TransportData) GetAsFloat64Array(name string) ([]float64, bool) {
	return getSlice[float64](t, name, Float64Array)
}
