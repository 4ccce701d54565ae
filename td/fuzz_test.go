package td

import (
	"bytes"
	"testing"
)

// fuzzDefs are the schemas FuzzUnpack decodes every input with: every type
// (map lookup, 4-byte bitmap), the benchmark record, and two small ones.
var fuzzDefs = []*Definition{
	sinkDef,
	benchDef,
	DefineTransportData([]Property{{Name: "b", Type: Bytes}, {Name: "s", Type: StringArray}, {Name: "f", Type: BoolArray}}),
	DefineTransportData([]Property{{Name: "i", Type: Int16Array}, {Name: "u", Type: Uint32}, {Name: "x", Type: Float64Array}}),
}

// FuzzUnpack feeds arbitrary bytes to Unpack under several schemas. Unpack must
// not panic, and since the encoding is canonical, any input it accepts must
// pack back to exactly the same bytes.
func FuzzUnpack(f *testing.F) {
	for _, keep := range []func(int) bool{
		func(int) bool { return true },
		func(int) bool { return false },
		func(i int) bool { return i%3 == 0 },
		func(i int) bool { return i%2 == 1 },
	} {
		rec := sinkDef.New()
		fillSink(f, rec, keep)
		f.Add(rec.Pack())
	}
	f.Add(benchRecord().Pack())
	for _, def := range fuzzDefs[2:] {
		f.Add(def.New().Pack())
	}
	small := fuzzDefs[2].New()
	_ = small.SetAsBytes("b", []byte("hello"))
	_ = small.SetAsStringArray("s", []string{"a", "", "bc"})
	_ = small.SetAsBoolArray("f", []bool{true, false, true, true, true, true, true, true, true})
	f.Add(small.Pack())
	nums := fuzzDefs[3].New()
	_ = nums.SetAsInt16Array("i", []int16{-1, 300, -32768})
	_ = nums.SetAsUint32("u", 1<<31)
	_ = nums.SetAsFloat64Array("x", []float64{1, -2})
	f.Add(nums.Pack())

	recs := make([]*TransportData, len(fuzzDefs))
	for i, def := range fuzzDefs {
		recs[i] = def.New()
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, rec := range recs {
			if err := rec.Unpack(data); err != nil {
				continue
			}
			if again := rec.Pack(); !bytes.Equal(again, data) {
				t.Fatalf("accepted input does not repack to itself:\n  in %x\n out %x", data, again)
			}
		}
	})
}
