package td_test

import (
	"fmt"

	"github.com/marsmesh/marsmesh/td"
)

// Schemas are defined once, at package level, identically in the sending and
// the handling program; the property order is the wire order.
var (
	matchData = td.DefineTransportData([]td.Property{
		{Name: "name", Type: td.String},
		{Name: "counter", Type: td.Int},
		{Name: "list", Type: td.Uint32Array},
		{Name: "data", Type: td.Bytes},
		{Name: "users", Type: td.BytesArray}, // each element is a packed userData record
	})
	userData = td.DefineTransportData([]td.Property{
		{Name: "UID", Type: td.String},
		{Name: "SID", Type: td.String},
	})
)

type user struct{ ID, SID string }

// buildRequest is the sender side: it fills a record and packs it into the
// payload it would pass to mesh.SendRPC.
func buildRequest(users []user) ([]byte, error) {
	rec := matchData.New()
	if err := rec.SetAsString("name", "John"); err != nil {
		return nil, err
	}
	if err := rec.SetAsInt("counter", 0); err != nil {
		return nil, err
	}
	if err := rec.SetAsUint32Array("list", []uint32{10, 20, 2}); err != nil {
		return nil, err
	}
	if err := rec.SetAsBytes("data", []byte{0xff, 0xee, 0xdd, 0xcc}); err != nil {
		return nil, err
	}

	// Nested records: pack each user with its own schema, reusing one record.
	packedUsers := make([][]byte, len(users))
	u := userData.New()
	for i, usr := range users {
		u.Reset()
		if err := u.SetAsString("UID", usr.ID); err != nil {
			return nil, err
		}
		if err := u.SetAsString("SID", usr.SID); err != nil {
			return nil, err
		}
		packedUsers[i] = u.Pack()
	}
	if err := rec.SetAsBytesArray("users", packedUsers); err != nil {
		return nil, err
	}
	return rec.Pack(), nil
}

// handleRequest is the handler side, with the signature of an RPC handler: it
// unpacks the payload with the same schemas.
func handleRequest(payload []byte, senderAddr string) ([]byte, error) {
	rec := matchData.New()
	if err := rec.Unpack(payload); err != nil {
		return nil, err
	}
	name, _ := rec.GetAsString("name")
	counter, _ := rec.GetAsInt("counter")
	list, _ := rec.GetAsUint32Array("list")
	data, _ := rec.GetAsBytes("data")
	fmt.Printf("from %s: name=%s counter=%d list=%v data=%x\n", senderAddr, name, counter, list, data)

	packedUsers, _ := rec.GetAsBytesArray("users")
	u := userData.New() // one record reused for every element
	for _, b := range packedUsers {
		if err := u.Unpack(b); err != nil {
			return nil, err
		}
		uid, _ := u.GetAsString("UID")
		sid, _ := u.GetAsString("SID")
		fmt.Printf("  user %s in session %s\n", uid, sid)
	}
	return nil, nil
}

// Example shows a payload built by a sender and decoded by an RPC handler,
// including a list of nested records carried in a BytesArray.
func Example() {
	payload, err := buildRequest([]user{{"u-1", "s-100"}, {"u-2", "s-200"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("packed size:", len(payload))
	if _, err := handleRequest(payload, "10.0.0.5:7000"); err != nil {
		fmt.Println(err)
	}
	// Output:
	// packed size: 44
	// from 10.0.0.5:7000: name=John counter=0 list=[10 20 2] data=ffeeddcc
	//   user u-1 in session s-100
	//   user u-2 in session s-200
}

// ExampleTransportData_SetAsString shows that a misspelt name or a wrong type is
// reported, not ignored.
func ExampleTransportData_SetAsString() {
	rec := userData.New()
	fmt.Println(rec.SetAsString("uid", "u-1")) // names are case-sensitive
	fmt.Println(rec.SetAsInt("UID", 1))
	fmt.Println(rec.SetAsString("UID", "u-1"))
	// Output:
	// td: unknown property: "uid"
	// td: property type mismatch: "UID" is String, not Int
	// <nil>
}

// ExampleTransportData_AppendPack packs a stream of messages into one reused
// buffer, which allocates nothing once the buffer has grown.
func ExampleTransportData_AppendPack() {
	rec := userData.New()
	var buf []byte
	for i := range 3 {
		rec.Reset()
		_ = rec.SetAsString("UID", fmt.Sprintf("u-%d", i))
		buf = rec.AppendPack(buf[:0])
		fmt.Printf("%x\n", buf)
	}
	// Output:
	// 010103752d30
	// 010103752d31
	// 010103752d32
}

// ExampleDefine builds a schema at run time, where a bad schema is an error
// rather than a panic.
func ExampleDefine() {
	_, err := td.Define([]td.Property{{Name: "id", Type: td.Int}, {Name: "id", Type: td.String}})
	fmt.Println(err)
	// Output:
	// td: invalid schema: property "id" defined twice (at 0 and 1)
}
