package td

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"testing"
)

// one returns the packed form of a single-property record whose
// value bytes are raw (the presence bit is set).
func one(raw ...byte) []byte { return append([]byte{formatVersion, 1}, raw...) }

func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func expectMalformed(t *testing.T, def *Definition, data []byte) {
	t.Helper()
	rec := def.New()
	fillSinkIfSink(t, rec)
	err := rec.Unpack(data)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("Unpack(%x) = %v, want ErrMalformed", data, err)
	}
	for _, p := range def.props {
		if rec.Has(p.Name) {
			t.Fatalf("Unpack(%x) failed but left %s set", data, p.Name)
		}
	}
}

func fillSinkIfSink(t *testing.T, rec *TransportData) {
	if rec.def == sinkDef {
		fillSink(t, rec, func(int) bool { return true })
	}
}

func single(typ Type) *Definition {
	return DefineTransportData([]Property{{Name: "v", Type: typ}})
}

func TestUnpackMalformed(t *testing.T) {
	cases := []struct {
		name string
		typ  Type
		data []byte
	}{
		{"empty input", Int, nil},
		{"version 0", Int, []byte{0, 0}},
		{"version 2", Int, []byte{2, 0}},
		{"no bitmap", Int, []byte{formatVersion}},
		{"bitmap bit beyond schema", Int, []byte{formatVersion, 2}},
		{"bitmap high bit", Int, []byte{formatVersion, 0x81, 0}},
		{"trailing byte unset", Int, []byte{formatVersion, 0, 0}},
		{"trailing byte set", Int, one(2, 0)},
		{"missing value", Int, one()},
		{"bool 2", Bool, one(2)},
		{"bool ff", Bool, one(0xff)},
		{"overlong varint", Uint64, one(0x80, 0)},
		{"overlong varint 2", Uint64, one(0x81, 0x80, 0)},
		{"varint 11 bytes", Uint64, one(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
		{"varint bit 64", Uint64, one(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02)},
		{"varint truncated", Int, one(0x80)},
		{"int16 too big", Int16, one(uv(65536)...)},
		{"int32 too small", Int32, cat([]byte{formatVersion, 1}, binary.AppendVarint(nil, math.MinInt32-1))},
		{"uint16 too big", Uint16, one(uv(65536)...)},
		{"uint32 too big", Uint32, one(uv(1 << 32)...)},
		{"float32 short", Float32, one(1, 2, 3)},
		{"float64 short", Float64, one(1, 2, 3, 4, 5, 6, 7)},
		{"string too long", String, one(5, 'a', 'b')},
		{"bytes huge length", Bytes, one(uv(math.MaxUint64)...)},
		{"bytes array huge count", BytesArray, one(uv(1 << 62)...)},
		{"string array count > input", StringArray, one(3, 0, 0)},
		{"string array element short", StringArray, one(1, 4, 'a')},
		{"bool array huge count", BoolArray, one(uv(1 << 40)...)},
		{"bool array count > bits", BoolArray, one(17, 0xff, 0xff)},
		{"bool array padding", BoolArray, one(3, 0x08)},
		{"int8 array short", Int8Array, one(3, 1, 2)},
		{"int16 array out of range", Int16Array, cat(one(1), binary.AppendVarint(nil, 40000))},
		{"uint16 array out of range", Uint16Array, cat(one(1), uv(70000))},
		{"uint32 array out of range", Uint32Array, cat(one(1), uv(1<<33))},
		{"int64 array huge count", Int64Array, one(uv(math.MaxInt64)...)},
		{"int64 array element truncated", IntArray, one(2, 1, 0x80)},
		{"float32 array count", Float32Array, one(2, 0, 0, 0, 0, 0, 0, 0)},
		{"float64 array count", Float64Array, one(1, 0, 0, 0, 0, 0, 0, 0)},
		{"uint64 array huge count", Uint64Array, one(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectMalformed(t, single(c.typ), c.data) })
	}
}

// Every proper prefix of a valid record, and the record with any byte added,
// must be rejected.
func TestUnpackTruncatedAndExtended(t *testing.T) {
	rec := sinkDef.New()
	fillSink(t, rec, func(int) bool { return true })
	packed := rec.Pack()
	for n := range len(packed) {
		expectMalformed(t, sinkDef, packed[:n])
	}
	for _, b := range []byte{0, 1, 0x80, 0xff} {
		expectMalformed(t, sinkDef, append(bytes.Clone(packed), b))
	}
}

// allocated returns the average heap bytes one call of f allocates.
func allocated(f func()) float64 {
	const runs = 50
	f() // warm up
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / runs
}

// Unpack must never allocate more than a small multiple of its input, whatever
// counts the input announces. The worst case allowed by design is a BytesArray
// of empty elements: one 24-byte slice header per input byte.
func TestUnpackHostileAllocations(t *testing.T) {
	const perByte, slack = 32, 512
	filler := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	cases := []struct {
		name string
		typ  Type
		data []byte
	}{
		{"huge bytes length", Bytes, one(uv(math.MaxUint64 >> 1)...)},
		{"huge string length", String, one(uv(1 << 31)...)},
		{"huge bytes array count", BytesArray, one(uv(1 << 62)...)},
		{"huge string array count", StringArray, one(uv(1 << 40)...)},
		{"huge bool array count", BoolArray, one(uv(1 << 50)...)},
		{"huge int64 array count", Int64Array, one(uv(1 << 60)...)},
		{"huge float64 array count", Float64Array, one(uv(1 << 59)...)},
		{"huge uint32 array count", Uint32Array, one(uv(1 << 33)...)},
		// Counts that fit the input, with the elements then running out.
		{"bytes array, elements run out", BytesArray, cat(one(uv(4096)...), filler(4096, 1))},
		{"string array, elements run out", StringArray, cat(one(uv(4096)...), filler(4096, 1))},
		{"int64 array, overflowing element", Int64Array, cat(one(uv(4096)...), filler(4096, 0x80))},
		{"bool array, bad padding", BoolArray, cat(one(uv(8*4096-1)...), filler(4096, 0xff))},
		{"bytes, one short", Bytes, cat(one(uv(4096)...), filler(4095, 7))},
		// Valid inputs at the worst ratio.
		{"bytes array of empties", BytesArray, cat(one(uv(4096)...), filler(4096, 0))},
		{"bool array", BoolArray, cat(one(uv(8*4096)...), filler(4096, 0xff))},
		{"int64 array", Int64Array, cat(one(uv(4096)...), filler(4096, 1))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := single(c.typ).New()
			got := allocated(func() { _ = rec.Unpack(c.data) })
			t.Logf("%d input bytes, %.0f bytes allocated", len(c.data), got)
			if limit := float64(perByte*len(c.data) + slack); got > limit {
				t.Fatalf("Unpack of %d bytes allocated %.0f bytes, limit %.0f", len(c.data), got, limit)
			}
		})
	}
}
