package td

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them, so
// callers can test the cause with errors.Is.
var (
	// ErrSchema reports an invalid schema: an empty or duplicate name, or an
	// unknown type.
	ErrSchema = errors.New("td: invalid schema")
	// ErrUnknownProperty reports a name the schema does not define.
	ErrUnknownProperty = errors.New("td: unknown property")
	// ErrTypeMismatch reports a setter whose type differs from the property's.
	ErrTypeMismatch = errors.New("td: property type mismatch")
	// ErrMalformed reports packed bytes that are truncated, carry trailing
	// bytes, use an unknown format version or do not fit the schema.
	ErrMalformed = errors.New("td: malformed data")
)

// formatVersion is the first byte of every packed record.
const formatVersion = 1

// linearLookupMax is the schema size up to which names are found by a linear
// scan, which beats a map lookup for the few properties RPC payloads usually have.
const linearLookupMax = 8

// Property is one named, typed field of a schema.
type Property struct {
	Name string
	Type Type
}

// Definition is a fixed schema: an ordered list of properties. It is immutable
// once defined and safe for concurrent use; the instances it creates are not.
type Definition struct {
	props     []Property
	index     map[string]int // nil for small schemas, which are scanned
	bitmapLen int            // bytes of the presence bitmap
}

// DefineTransportData fixes a schema, typically to initialise a package-level
// variable. The order of props is the wire order, so sender and receiver must
// define the same properties in the same order. It panics on a schema error,
// since such a schema is a programming mistake found at start-up; use Define for
// schemas built at run time.
func DefineTransportData(props []Property) *Definition {
	d, err := Define(props)
	if err != nil {
		panic(err)
	}
	return d
}

// Define is DefineTransportData returning the schema error, which wraps
// ErrSchema, instead of panicking.
func Define(props []Property) (*Definition, error) {
	d := &Definition{
		props:     append([]Property(nil), props...),
		bitmapLen: (len(props) + 7) / 8,
	}
	seen := make(map[string]int, len(props))
	for i, p := range d.props {
		if p.Name == "" {
			return nil, fmt.Errorf("%w: property %d has an empty name", ErrSchema, i)
		}
		if !p.Type.Valid() {
			return nil, fmt.Errorf("%w: property %q has unknown type %v", ErrSchema, p.Name, p.Type)
		}
		if j, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("%w: property %q defined twice (at %d and %d)", ErrSchema, p.Name, j, i)
		}
		seen[p.Name] = i
	}
	if len(d.props) > linearLookupMax {
		d.index = seen
	}
	return d, nil
}

// Properties returns a copy of the schema's properties in wire order.
func (d *Definition) Properties() []Property {
	return append([]Property(nil), d.props...)
}

// Len returns the number of properties in the schema.
func (d *Definition) Len() int { return len(d.props) }

// New returns an empty instance of the schema, with no property set.
func (d *Definition) New() *TransportData {
	return &TransportData{def: d, slots: make([]slot, len(d.props))}
}

// lookup returns the position of name in the schema, or -1.
func (d *Definition) lookup(name string) int {
	if d.index != nil {
		if i, ok := d.index[name]; ok {
			return i
		}
		return -1
	}
	for i := range d.props {
		if d.props[i].Name == name {
			return i
		}
	}
	return -1
}
