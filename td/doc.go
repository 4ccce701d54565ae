// Package td implements TransportData: records whose layout is fixed by a
// schema, packed into compact bytes for mesh RPC payloads.
//
// A self-describing encoding such as a msgpack map spends bytes and time on
// field names and type tags in every message. With td, both ends define the same
// schema once, usually as a package-level variable, and the packed form holds
// only the values:
//
//	var playerData = td.DefineTransportData([]td.Property{
//		{Name: "name", Type: td.String},
//		{Name: "score", Type: td.Int},
//	})
//
// The sender fills a record and packs it:
//
//	rec := playerData.New()
//	if err := rec.SetAsString("name", "ada"); err != nil { ... }
//	payload := rec.Pack()
//
// and the handler unpacks it with the same schema:
//
//	rec := playerData.New()
//	if err := rec.Unpack(payload); err != nil { ... }
//	name, ok := rec.GetAsString("name")
//
// Records nest by packing the inner record and storing its bytes in a Bytes or
// BytesArray property, as the package example shows.
//
// # Schemas
//
// A schema is an ordered list of properties with distinct, non-empty names and a
// Type each. DefineTransportData panics on an invalid schema, which suits
// package-level variables; Define returns the error instead. The property order
// is the wire order: to evolve a schema, deploy the change to senders and
// receivers together, since nothing on the wire tells two schemas apart.
//
// # Records
//
// Definition.New creates a record, a *TransportData, with every property unset.
// There is one setter and one getter per type, SetAsX and GetAsX. A setter given
// a name the schema lacks, or a property of another type, returns an error
// (ErrUnknownProperty or ErrTypeMismatch) and changes nothing. A getter reports
// false for such a name and for a property that is not set. A property that is
// unset when packed is unset after unpacking; one set to an empty string or
// array stays set. Reset unsets everything so a record can be reused.
//
// Unlike the Diarkis API this package follows, setters return an error rather
// than nothing, and Int, IntArray and the other 64-bit integer types use int64.
//
// # Wire form
//
// A packed record is a format version byte, a presence bitmap with one bit per
// property, and then the values of the present properties in schema order.
// Integers are varints (zigzag for signed types), floats keep their exact IEEE
// bits (NaN payloads included), and strings, byte strings and arrays carry a
// varint length. The encoding is canonical, so equal records pack to equal
// bytes. The details are in the comment at the top of pack.go.
//
// Unpack treats its input as untrusted: any truncated, oversized or malformed
// input yields an error wrapping ErrMalformed, never a panic, and a forged
// length cannot make it allocate more than a small multiple of the input size.
//
// # Performance
//
// Setters, getters and AppendPack into a reused buffer do not allocate. Unpack
// allocates one block for all string and byte contents plus one slice per
// array. The benchmarks in bench_test.go compare td with msgpack (of a map and
// of a tagged struct) and encoding/json on the same record.
package td
