package td

import (
	"errors"
	"math"
	"testing"
)

// accessor sets a sample value through a type's setter and reads it back
// through its getter, so tests can drive every SetAsX/GetAsX pair generically.
type accessor struct {
	set func(rec *TransportData, name string) error
	get func(rec *TransportData, name string) bool // the getter's found flag
}

func acc[V any](set func(*TransportData, string, V) error, get func(*TransportData, string) (V, bool), sample V) accessor {
	return accessor{
		set: func(rec *TransportData, name string) error { return set(rec, name, sample) },
		get: func(rec *TransportData, name string) bool { _, ok := get(rec, name); return ok },
	}
}

var accessors = map[Type]accessor{
	String:       acc((*TransportData).SetAsString, (*TransportData).GetAsString, "sample"),
	Bool:         acc((*TransportData).SetAsBool, (*TransportData).GetAsBool, true),
	Int:          acc((*TransportData).SetAsInt, (*TransportData).GetAsInt, -12345),
	Int8:         acc((*TransportData).SetAsInt8, (*TransportData).GetAsInt8, -8),
	Int16:        acc((*TransportData).SetAsInt16, (*TransportData).GetAsInt16, -1600),
	Int32:        acc((*TransportData).SetAsInt32, (*TransportData).GetAsInt32, math.MinInt32),
	Int64:        acc((*TransportData).SetAsInt64, (*TransportData).GetAsInt64, math.MaxInt64),
	Uint8:        acc((*TransportData).SetAsUint8, (*TransportData).GetAsUint8, 200),
	Uint16:       acc((*TransportData).SetAsUint16, (*TransportData).GetAsUint16, 60000),
	Uint32:       acc((*TransportData).SetAsUint32, (*TransportData).GetAsUint32, 1<<31),
	Uint64:       acc((*TransportData).SetAsUint64, (*TransportData).GetAsUint64, math.MaxUint64),
	Float32:      acc((*TransportData).SetAsFloat32, (*TransportData).GetAsFloat32, 1.5),
	Float64:      acc((*TransportData).SetAsFloat64, (*TransportData).GetAsFloat64, math.Pi),
	Bytes:        acc((*TransportData).SetAsBytes, (*TransportData).GetAsBytes, []byte{0, 1, 0xff}),
	StringArray:  acc((*TransportData).SetAsStringArray, (*TransportData).GetAsStringArray, []string{"a", "", "ccc"}),
	BytesArray:   acc((*TransportData).SetAsBytesArray, (*TransportData).GetAsBytesArray, [][]byte{{1}, nil, {2, 3}}),
	BoolArray:    acc((*TransportData).SetAsBoolArray, (*TransportData).GetAsBoolArray, []bool{true, false, true, true, false, false, true, false, true}),
	IntArray:     acc((*TransportData).SetAsIntArray, (*TransportData).GetAsIntArray, []int64{-1, 0, math.MaxInt64}),
	Int8Array:    acc((*TransportData).SetAsInt8Array, (*TransportData).GetAsInt8Array, []int8{-128, 0, 127}),
	Int16Array:   acc((*TransportData).SetAsInt16Array, (*TransportData).GetAsInt16Array, []int16{-32768, 5, 32767}),
	Int32Array:   acc((*TransportData).SetAsInt32Array, (*TransportData).GetAsInt32Array, []int32{math.MinInt32, -1, 1}),
	Int64Array:   acc((*TransportData).SetAsInt64Array, (*TransportData).GetAsInt64Array, []int64{math.MinInt64, 64, -65}),
	Uint8Array:   acc((*TransportData).SetAsUint8Array, (*TransportData).GetAsUint8Array, []uint8{0, 128, 255}),
	Uint16Array:  acc((*TransportData).SetAsUint16Array, (*TransportData).GetAsUint16Array, []uint16{0, 128, 65535}),
	Uint32Array:  acc((*TransportData).SetAsUint32Array, (*TransportData).GetAsUint32Array, []uint32{10, 20, 2, math.MaxUint32}),
	Uint64Array:  acc((*TransportData).SetAsUint64Array, (*TransportData).GetAsUint64Array, []uint64{0, 1 << 63, math.MaxUint64}),
	Float32Array: acc((*TransportData).SetAsFloat32Array, (*TransportData).GetAsFloat32Array, []float32{float32(math.NaN()), float32(math.Copysign(0, -1)), 3}),
	Float64Array: acc((*TransportData).SetAsFloat64Array, (*TransportData).GetAsFloat64Array, []float64{math.Inf(-1), 1e300}),
}

func TestAccessorTableComplete(t *testing.T) {
	for _, typ := range allTypes() {
		if _, ok := accessors[typ]; !ok {
			t.Errorf("no accessor for %v", typ)
		}
	}
}

// fillSink sets the sample value of every property of sinkDef whose index is
// selected by keep.
func fillSink(t testing.TB, rec *TransportData, keep func(i int) bool) {
	for i, p := range sinkDef.props {
		if keep(i) {
			if err := accessors[p.Type].set(rec, p.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestWrongNameAndType(t *testing.T) {
	for _, propType := range allTypes() {
		for _, setType := range allTypes() {
			rec := sinkDef.New()
			name := propType.String()
			err := accessors[setType].set(rec, name)
			found := accessors[setType].get(rec, name)
			if setType == propType {
				if err != nil || !found {
					t.Errorf("SetAs%v on %v: %v, found %v", setType, propType, err, found)
				}
				continue
			}
			if !errors.Is(err, ErrTypeMismatch) {
				t.Errorf("SetAs%v on a %v property: err %v, want ErrTypeMismatch", setType, propType, err)
			}
			if rec.Has(name) || found {
				t.Errorf("SetAs%v on a %v property changed the record", setType, propType)
			}
			// A property set with its own type is still invisible to other getters.
			if err := accessors[propType].set(rec, name); err != nil {
				t.Fatal(err)
			}
			if accessors[setType].get(rec, name) {
				t.Errorf("GetAs%v found a %v property", setType, propType)
			}
		}
		rec := sinkDef.New()
		if err := accessors[propType].set(rec, "missing"); !errors.Is(err, ErrUnknownProperty) {
			t.Errorf("SetAs%v on an unknown name: err %v, want ErrUnknownProperty", propType, err)
		}
		if accessors[propType].get(rec, "missing") {
			t.Errorf("GetAs%v found an unknown name", propType)
		}
	}
	// Small schemas take the linear lookup path; check it rejects too.
	small := DefineTransportData([]Property{{Name: "a", Type: Int}}).New()
	if err := small.SetAsInt("b", 1); !errors.Is(err, ErrUnknownProperty) {
		t.Errorf("small schema, unknown name: %v", err)
	}
	if err := small.SetAsString("a", "x"); !errors.Is(err, ErrTypeMismatch) {
		t.Errorf("small schema, wrong type: %v", err)
	}
	if err := small.Unset("b"); !errors.Is(err, ErrUnknownProperty) {
		t.Errorf("Unset unknown name: %v", err)
	}
}

func TestSetGetDoNotAllocate(t *testing.T) {
	rec := sinkDef.New()
	list := []uint32{1, 2, 3}
	n := testing.AllocsPerRun(100, func() {
		_ = rec.SetAsString("String", "abc")
		_ = rec.SetAsInt("Int", 42)
		_ = rec.SetAsUint32Array("Uint32Array", list)
		_, _ = rec.GetAsString("String")
		_, _ = rec.GetAsUint32Array("Uint32Array")
		_, _ = rec.GetAsInt("Int")
	})
	if n != 0 {
		t.Fatalf("set/get allocated %v times per run", n)
	}
}
