package td

import (
	"errors"
	"strings"
	"testing"
)

// allTypes lists every property type, in declaration order.
func allTypes() []Type {
	var ts []Type
	for typ := String; typ < typeEnd; typ++ {
		ts = append(ts, typ)
	}
	return ts
}

// sinkDef is a schema with one property of every type, named after the type.
// With more than linearLookupMax properties it also exercises the map lookup.
var sinkDef = func() *Definition {
	var props []Property
	for _, typ := range allTypes() {
		props = append(props, Property{Name: typ.String(), Type: typ})
	}
	return DefineTransportData(props)
}()

func TestDefineErrors(t *testing.T) {
	cases := map[string][]Property{
		"empty name":    {{Name: "a", Type: Int}, {Name: "", Type: String}},
		"duplicate":     {{Name: "a", Type: Int}, {Name: "b", Type: Bool}, {Name: "a", Type: String}},
		"zero type":     {{Name: "a"}},
		"unknown type":  {{Name: "a", Type: typeEnd}},
		"unknown type2": {{Name: "a", Type: Type(200)}},
	}
	for name, props := range cases {
		t.Run(name, func(t *testing.T) {
			d, err := Define(props)
			if !errors.Is(err, ErrSchema) || d != nil {
				t.Fatalf("Define = %v, %v; want nil, ErrSchema", d, err)
			}
			defer func() {
				r := recover()
				if err, ok := r.(error); !ok || !errors.Is(err, ErrSchema) {
					t.Fatalf("DefineTransportData panicked with %v; want ErrSchema", r)
				}
			}()
			DefineTransportData(props)
			t.Fatal("DefineTransportData did not panic")
		})
	}
}

func TestDefineValid(t *testing.T) {
	props := []Property{{Name: "x", Type: Int}, {Name: "X", Type: String}}
	d, err := Define(props)
	if err != nil {
		t.Fatal(err)
	}
	props[0].Name = "changed" // the schema keeps its own copy
	got := d.Properties()
	if d.Len() != 2 || got[0].Name != "x" || got[1] != (Property{Name: "X", Type: String}) {
		t.Fatalf("Properties = %v", got)
	}
	got[0].Name = "changed again"
	if d.Properties()[0].Name != "x" {
		t.Fatal("Properties exposed the schema's slice")
	}
	// Names are case-sensitive: "x" and "X" are distinct properties.
	rec := d.New()
	if err := rec.SetAsInt("x", 1); err != nil {
		t.Fatal(err)
	}
	if err := rec.SetAsString("X", "one"); err != nil {
		t.Fatal(err)
	}
	if rec.Definition() != d {
		t.Fatal("Definition() is not the creating schema")
	}

	empty, err := Define(nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := empty.New().Pack(); string(p) != "\x01" {
		t.Fatalf("empty schema packs to %x", p)
	}
}

func TestTypeString(t *testing.T) {
	seen := map[string]bool{}
	for _, typ := range allTypes() {
		s := typ.String()
		if s == "" || strings.HasPrefix(s, "Type(") || seen[s] {
			t.Fatalf("type %d has name %q", typ, s)
		}
		seen[s] = true
	}
	if len(seen) != 28 {
		t.Fatalf("%d types, want 28", len(seen))
	}
	if s := Type(0).String(); s != "Type(0)" {
		t.Fatalf("Type(0).String() = %q", s)
	}
	if Type(0).Valid() || typeEnd.Valid() {
		t.Fatal("invalid type reported valid")
	}
}

func TestLargeSchema(t *testing.T) {
	// 70 properties: a 9-byte bitmap whose last byte is partly used.
	var props []Property
	for i := range 70 {
		props = append(props, Property{Name: "p" + strings.Repeat("x", i), Type: Uint16})
	}
	d := DefineTransportData(props)
	rec := d.New()
	for i := 0; i < 70; i += 3 {
		if err := rec.SetAsUint16(props[i].Name, uint16(i*1000)); err != nil {
			t.Fatal(err)
		}
	}
	out := d.New()
	if err := out.Unpack(rec.Pack()); err != nil {
		t.Fatal(err)
	}
	for i, p := range props {
		v, ok := out.GetAsUint16(p.Name)
		if ok != (i%3 == 0) || (ok && v != uint16(i*1000)) {
			t.Fatalf("property %d: %v, %v", i, v, ok)
		}
	}
}
