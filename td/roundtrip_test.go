package td

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const mib = 1 << 20

// roundTrip packs rec, checks the packed form against Size and AppendPack,
// unpacks it into a fresh record and checks that packing that again gives the
// same bytes.
func roundTrip(t testing.TB, rec *TransportData) *TransportData {
	t.Helper()
	packed := rec.Pack()
	if len(packed) != rec.Size() {
		t.Fatalf("len(Pack()) = %d, Size() = %d", len(packed), rec.Size())
	}
	prefix := []byte("prefix")
	if app := rec.AppendPack(prefix); !bytes.Equal(app[len(prefix):], packed) || string(app[:len(prefix)]) != "prefix" {
		t.Fatal("AppendPack differs from Pack")
	}
	out := rec.Definition().New()
	if err := out.Unpack(packed); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	if again := out.Pack(); !bytes.Equal(again, packed) {
		t.Fatalf("repacked record differs:\n got %x\nwant %x", again, packed)
	}
	return out
}

// checkType round-trips each value through a property of type typ placed
// between two other properties, and checks it reads back equal.
func checkType[V any](t *testing.T, typ Type,
	set func(*TransportData, string, V) error, get func(*TransportData, string) (V, bool),
	eq func(a, b V) bool, values ...V) {
	t.Helper()
	def := DefineTransportData([]Property{{Name: "before", Type: Uint16}, {Name: "v", Type: typ}, {Name: "after", Type: String}})
	for i, want := range values {
		rec := def.New()
		if err := set(rec, "v", want); err != nil {
			t.Fatalf("%v value %d: set: %v", typ, i, err)
		}
		_ = rec.SetAsUint16("before", 0xbeef)
		_ = rec.SetAsString("after", "end")
		out := roundTrip(t, rec)
		got, ok := get(out, "v")
		if !ok || !eq(got, want) {
			t.Fatalf("%v value %d: round trip gave %v, %v", typ, i, short(got), ok)
		}
		if b, _ := out.GetAsUint16("before"); b != 0xbeef {
			t.Fatalf("%v value %d: neighbour before = %x", typ, i, b)
		}
		if a, _ := out.GetAsString("after"); a != "end" {
			t.Fatalf("%v value %d: neighbour after = %q", typ, i, a)
		}
	}
}

func short(v any) any {
	if s, ok := v.(string); ok && len(s) > 40 {
		return s[:40] + "..."
	}
	return v
}

func same[V comparable](a, b V) bool { return a == b }

func sameF32(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

func sameF64(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }

func sameSlice[V comparable](a, b []V) bool { return slices.Equal(a, b) }

func sameBytesSlice(a, b [][]byte) bool { return slices.EqualFunc(a, b, bytes.Equal) }

func randBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// NaNs with different payloads, quiet and signalling, must keep their bits.
var (
	nan32s = []float32{float32(math.NaN()), math.Float32frombits(0x7fc00001), math.Float32frombits(0x7f800001), math.Float32frombits(0xffffffff)}
	nan64s = []float64{math.NaN(), math.Float64frombits(0x7ff8000000000001), math.Float64frombits(0x7ff0000000000001), math.Float64frombits(0xffffffffffffffff)}
)

func TestRoundTripScalars(t *testing.T) {
	checkType(t, String, (*TransportData).SetAsString, (*TransportData).GetAsString, same,
		"", "a", "héllo, 世界", "nul\x00inside", "\xff\xfe not utf-8", strings.Repeat("s", mib))
	checkType(t, Bool, (*TransportData).SetAsBool, (*TransportData).GetAsBool, same, false, true)
	checkType(t, Int, (*TransportData).SetAsInt, (*TransportData).GetAsInt, same,
		0, 1, -1, 63, 64, -64, -65, math.MinInt64, math.MaxInt64)
	checkType(t, Int8, (*TransportData).SetAsInt8, (*TransportData).GetAsInt8, same, 0, -1, math.MinInt8, math.MaxInt8)
	checkType(t, Int16, (*TransportData).SetAsInt16, (*TransportData).GetAsInt16, same, 0, -1, math.MinInt16, math.MaxInt16)
	checkType(t, Int32, (*TransportData).SetAsInt32, (*TransportData).GetAsInt32, same, 0, -1, math.MinInt32, math.MaxInt32)
	checkType(t, Int64, (*TransportData).SetAsInt64, (*TransportData).GetAsInt64, same, 0, -1, math.MinInt64, math.MaxInt64)
	checkType(t, Uint8, (*TransportData).SetAsUint8, (*TransportData).GetAsUint8, same, 0, 127, 128, math.MaxUint8)
	checkType(t, Uint16, (*TransportData).SetAsUint16, (*TransportData).GetAsUint16, same, 0, 127, 128, math.MaxUint16)
	checkType(t, Uint32, (*TransportData).SetAsUint32, (*TransportData).GetAsUint32, same, 0, 127, 128, math.MaxUint32)
	checkType(t, Uint64, (*TransportData).SetAsUint64, (*TransportData).GetAsUint64, same, 0, 127, 128, 1<<63, math.MaxUint64)
	checkType(t, Float32, (*TransportData).SetAsFloat32, (*TransportData).GetAsFloat32, sameF32,
		append([]float32{0, float32(math.Copysign(0, -1)), 1.5, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32,
			float32(math.Inf(1)), float32(math.Inf(-1))}, nan32s...)...)
	checkType(t, Float64, (*TransportData).SetAsFloat64, (*TransportData).GetAsFloat64, sameF64,
		append([]float64{0, math.Copysign(0, -1), 1.5, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64,
			math.Inf(1), math.Inf(-1)}, nan64s...)...)
	checkType(t, Bytes, (*TransportData).SetAsBytes, (*TransportData).GetAsBytes, bytes.Equal,
		nil, []byte{}, []byte{0}, []byte{0xff, 0, 0xff}, randBytes(mib))
}

func TestRoundTripArrays(t *testing.T) {
	checkType(t, StringArray, (*TransportData).SetAsStringArray, (*TransportData).GetAsStringArray, sameSlice,
		nil, []string{}, []string{""}, []string{"a", "", "世界"}, []string{strings.Repeat("x", mib), "y"})
	checkType(t, BytesArray, (*TransportData).SetAsBytesArray, (*TransportData).GetAsBytesArray, sameBytesSlice,
		nil, [][]byte{}, [][]byte{nil}, [][]byte{{1}, {}, {2, 3}}, [][]byte{randBytes(mib), {9}})
	var bools [][]bool
	for _, n := range []int{0, 1, 7, 8, 9, 16, 17, 1000} {
		b := make([]bool, n)
		for i := range b {
			b[i] = i%3 == 0 || i == n-1
		}
		bools = append(bools, b)
	}
	checkType(t, BoolArray, (*TransportData).SetAsBoolArray, (*TransportData).GetAsBoolArray, sameSlice, bools...)
	checkType(t, IntArray, (*TransportData).SetAsIntArray, (*TransportData).GetAsIntArray, sameSlice,
		nil, []int64{}, []int64{math.MinInt64, -1, 0, 1, math.MaxInt64})
	checkType(t, Int8Array, (*TransportData).SetAsInt8Array, (*TransportData).GetAsInt8Array, sameSlice,
		nil, []int8{}, []int8{math.MinInt8, -1, 0, 1, math.MaxInt8})
	checkType(t, Int16Array, (*TransportData).SetAsInt16Array, (*TransportData).GetAsInt16Array, sameSlice,
		nil, []int16{}, []int16{math.MinInt16, -1, 0, 1, math.MaxInt16})
	checkType(t, Int32Array, (*TransportData).SetAsInt32Array, (*TransportData).GetAsInt32Array, sameSlice,
		nil, []int32{}, []int32{math.MinInt32, -1, 0, 1, math.MaxInt32})
	checkType(t, Int64Array, (*TransportData).SetAsInt64Array, (*TransportData).GetAsInt64Array, sameSlice,
		nil, []int64{}, []int64{math.MinInt64, -1, 0, 1, math.MaxInt64})
	checkType(t, Uint8Array, (*TransportData).SetAsUint8Array, (*TransportData).GetAsUint8Array, sameSlice,
		nil, []uint8{}, []uint8{0, 1, math.MaxUint8}, randBytes(mib))
	checkType(t, Uint16Array, (*TransportData).SetAsUint16Array, (*TransportData).GetAsUint16Array, sameSlice,
		nil, []uint16{}, []uint16{0, 1, 128, math.MaxUint16})
	checkType(t, Uint32Array, (*TransportData).SetAsUint32Array, (*TransportData).GetAsUint32Array, sameSlice,
		nil, []uint32{}, []uint32{0, 1, 128, math.MaxUint32})
	checkType(t, Uint64Array, (*TransportData).SetAsUint64Array, (*TransportData).GetAsUint64Array, sameSlice,
		nil, []uint64{}, []uint64{0, 1, 128, 1 << 63, math.MaxUint64})
	checkType(t, Float32Array, (*TransportData).SetAsFloat32Array, (*TransportData).GetAsFloat32Array,
		func(a, b []float32) bool { return slices.EqualFunc(a, b, sameF32) },
		nil, []float32{}, append([]float32{0, float32(math.Copysign(0, -1)), math.MaxFloat32, float32(math.Inf(-1))}, nan32s...))
	checkType(t, Float64Array, (*TransportData).SetAsFloat64Array, (*TransportData).GetAsFloat64Array,
		func(a, b []float64) bool { return slices.EqualFunc(a, b, sameF64) },
		nil, []float64{}, append([]float64{0, math.Copysign(0, -1), math.MaxFloat64, math.Inf(1)}, nan64s...))
}

func TestEmptyIsSetNotUnset(t *testing.T) {
	rec := sinkDef.New()
	_ = rec.SetAsString("String", "")
	_ = rec.SetAsBytes("Bytes", nil)
	_ = rec.SetAsUint32Array("Uint32Array", []uint32{})
	out := roundTrip(t, rec)
	for _, name := range []string{"String", "Bytes", "Uint32Array"} {
		if !out.Has(name) {
			t.Errorf("empty %s came back unset", name)
		}
	}
	if v, ok := out.GetAsBytes("Bytes"); !ok || len(v) != 0 {
		t.Errorf("GetAsBytes = %v, %v", v, ok)
	}
}

func TestUnsetRoundTripsAsUnset(t *testing.T) {
	patterns := map[string]func(int) bool{
		"none":  func(int) bool { return false },
		"all":   func(int) bool { return true },
		"even":  func(i int) bool { return i%2 == 0 },
		"odd":   func(i int) bool { return i%2 == 1 },
		"first": func(i int) bool { return i == 0 },
		"last":  func(i int) bool { return i == len(sinkDef.props)-1 },
	}
	for name, keep := range patterns {
		t.Run(name, func(t *testing.T) {
			rec := sinkDef.New()
			fillSink(t, rec, keep)
			out := roundTrip(t, rec)
			for i, p := range sinkDef.props {
				if out.Has(p.Name) != keep(i) || accessors[p.Type].get(out, p.Name) != keep(i) {
					t.Errorf("property %s: Has = %v, want %v", p.Name, out.Has(p.Name), keep(i))
				}
			}
		})
	}
	// An empty record is the version byte and an all-zero bitmap.
	if p := sinkDef.New().Pack(); !bytes.Equal(p, []byte{formatVersion, 0, 0, 0, 0}) {
		t.Errorf("empty record packs to %x", p)
	}
}

func TestResetAndReuse(t *testing.T) {
	rec := sinkDef.New()
	fillSink(t, rec, func(int) bool { return true })
	rec.Reset()
	for _, p := range sinkDef.props {
		if rec.Has(p.Name) {
			t.Fatalf("%s still set after Reset", p.Name)
		}
	}
	if !bytes.Equal(rec.Pack(), sinkDef.New().Pack()) {
		t.Fatal("reset record does not pack like a new one")
	}

	// Unpack replaces the whole record: properties absent from the input are
	// unset afterwards, and values read before stay intact.
	full := sinkDef.New()
	fillSink(t, full, func(int) bool { return true })
	partial := sinkDef.New()
	_ = partial.SetAsString("String", "second")
	if err := rec.Unpack(full.Pack()); err != nil {
		t.Fatal(err)
	}
	first, _ := rec.GetAsString("String")
	firstBytes, _ := rec.GetAsBytes("Bytes")
	if err := rec.Unpack(partial.Pack()); err != nil {
		t.Fatal(err)
	}
	if rec.Has("Int") || rec.Has("Bytes") {
		t.Fatal("Unpack kept properties the input lacks")
	}
	if s, _ := rec.GetAsString("String"); s != "second" || first != "sample" || !bytes.Equal(firstBytes, []byte{0, 1, 0xff}) {
		t.Fatalf("values changed across Unpack: %q %q %x", s, first, firstBytes)
	}

	// Unset clears a single property.
	if err := full.Unset("Int"); err != nil || full.Has("Int") || !full.Has("String") {
		t.Fatalf("Unset: %v", err)
	}
}

func TestUnpackCopiesInput(t *testing.T) {
	rec := sinkDef.New()
	fillSink(t, rec, func(int) bool { return true })
	packed := rec.Pack()
	out := sinkDef.New()
	if err := out.Unpack(packed); err != nil {
		t.Fatal(err)
	}
	clear(packed)
	s, _ := out.GetAsString("String")
	b, _ := out.GetAsBytes("Bytes")
	ba, _ := out.GetAsBytesArray("BytesArray")
	if s != "sample" || !bytes.Equal(b, []byte{0, 1, 0xff}) || !bytes.Equal(ba[2], []byte{2, 3}) {
		t.Fatal("decoded values alias the input buffer")
	}
	// Appending to a decoded byte slice must not overwrite the next value.
	_ = append(b, 'X', 'X', 'X', 'X')
	if s2, _ := out.GetAsStringArray("StringArray"); s2[0] != "a" || s2[2] != "ccc" {
		t.Fatalf("append to a decoded slice clobbered a neighbour: %q", s2)
	}
}

func TestAppendPackDoesNotAllocate(t *testing.T) {
	rec := sinkDef.New()
	fillSink(t, rec, func(int) bool { return true })
	buf := rec.Pack()
	n := testing.AllocsPerRun(100, func() {
		buf = rec.AppendPack(buf[:0])
	})
	if n != 0 {
		t.Fatalf("AppendPack into a reused buffer allocated %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = rec.Pack() }); n != 1 {
		t.Fatalf("Pack allocated %v times, want 1", n)
	}
}

func TestPackIsCanonicalForEqualRecords(t *testing.T) {
	// Equal records give equal bytes regardless of the order of the setters.
	a, b := sinkDef.New(), sinkDef.New()
	fillSink(t, a, func(int) bool { return true })
	for i := len(sinkDef.props) - 1; i >= 0; i-- {
		p := sinkDef.props[i]
		_ = accessors[p.Type].set(b, p.Name)
	}
	if !bytes.Equal(a.Pack(), b.Pack()) {
		t.Fatal("equal records packed differently")
	}
}
