package td

import "strconv"

// Type is the type of one property of a schema. The zero Type is invalid, so a
// Property whose Type was left unset is rejected when the schema is defined.
type Type uint8

// Scalar property types. Int is a 64-bit signed integer, the same as Int64; both
// exist so that schemas written for other TransportData implementations compile.
const (
	String Type = iota + 1
	Bool
	Int
	Int8
	Int16
	Int32
	Int64
	Uint8
	Uint16
	Uint32
	Uint64
	Float32
	Float64
	Bytes

	// Array property types. IntArray holds int64 values, like Int64Array.
	StringArray
	BytesArray
	BoolArray
	IntArray
	Int8Array
	Int16Array
	Int32Array
	Int64Array
	Uint8Array
	Uint16Array
	Uint32Array
	Uint64Array
	Float32Array
	Float64Array

	typeEnd // one past the last valid Type
)

var typeNames = [typeEnd]string{
	String:       "String",
	Bool:         "Bool",
	Int:          "Int",
	Int8:         "Int8",
	Int16:        "Int16",
	Int32:        "Int32",
	Int64:        "Int64",
	Uint8:        "Uint8",
	Uint16:       "Uint16",
	Uint32:       "Uint32",
	Uint64:       "Uint64",
	Float32:      "Float32",
	Float64:      "Float64",
	Bytes:        "Bytes",
	StringArray:  "StringArray",
	BytesArray:   "BytesArray",
	BoolArray:    "BoolArray",
	IntArray:     "IntArray",
	Int8Array:    "Int8Array",
	Int16Array:   "Int16Array",
	Int32Array:   "Int32Array",
	Int64Array:   "Int64Array",
	Uint8Array:   "Uint8Array",
	Uint16Array:  "Uint16Array",
	Uint32Array:  "Uint32Array",
	Uint64Array:  "Uint64Array",
	Float32Array: "Float32Array",
	Float64Array: "Float64Array",
}

// Valid reports whether t is one of the declared property types.
func (t Type) Valid() bool { return t > 0 && t < typeEnd }

// String returns the name of the type constant, or "Type(n)" for an invalid type.
func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}
