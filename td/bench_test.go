package td

import (
	"encoding/json"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The benchmarks encode and decode one record, the shape of a typical RPC
// payload, with td and with the encodings it replaces: a string, two ints, a
// uint32 array of 16, 64 bytes and a bytes array of 4 (nested records).

var benchDef = DefineTransportData([]Property{
	{Name: "name", Type: String},
	{Name: "counter", Type: Int},
	{Name: "score", Type: Int},
	{Name: "list", Type: Uint32Array},
	{Name: "data", Type: Bytes},
	{Name: "users", Type: BytesArray},
})

type benchStruct struct {
	Name    string   `msgpack:"name" json:"name"`
	Counter int64    `msgpack:"counter" json:"counter"`
	Score   int64    `msgpack:"score" json:"score"`
	List    []uint32 `msgpack:"list" json:"list"`
	Data    []byte   `msgpack:"data" json:"data"`
	Users   [][]byte `msgpack:"users" json:"users"`
}

// The values mix magnitudes so varints get no free ride: one small and one
// large int, list values from 1 to 2^30 (1 to 5 varint bytes each), 64 random
// bytes, and four nested records packed with their own schema, as in the
// package example.
var (
	benchName    = "player-0042"
	benchCounter = int64(7)
	benchScore   = int64(1_500_000)
	benchList    = func() []uint32 {
		l := make([]uint32, 16)
		for i := range l {
			l[i] = 1 << (2 * i)
		}
		return l
	}()
	benchData  = randBytes(64)
	benchUsers = func() [][]byte {
		userDef := DefineTransportData([]Property{{Name: "UID", Type: String}, {Name: "SID", Type: String}})
		users := make([][]byte, 4)
		u := userDef.New()
		for i := range users {
			_ = u.SetAsString("UID", "user-100"+string(rune('0'+i)))
			_ = u.SetAsString("SID", "s-abc"+string(rune('0'+i)))
			users[i] = u.Pack()
		}
		return users
	}()
)

func setBench(rec *TransportData) {
	_ = rec.SetAsString("name", benchName)
	_ = rec.SetAsInt("counter", benchCounter)
	_ = rec.SetAsInt("score", benchScore)
	_ = rec.SetAsUint32Array("list", benchList)
	_ = rec.SetAsBytes("data", benchData)
	_ = rec.SetAsBytesArray("users", benchUsers)
}

func benchRecord() *TransportData {
	rec := benchDef.New()
	setBench(rec)
	return rec
}

func benchMap() map[string]interface{} {
	return map[string]interface{}{
		"name":    benchName,
		"counter": benchCounter,
		"score":   benchScore,
		"list":    benchList,
		"data":    benchData,
		"users":   benchUsers,
	}
}

func benchValue() *benchStruct {
	return &benchStruct{Name: benchName, Counter: benchCounter, Score: benchScore,
		List: benchList, Data: benchData, Users: benchUsers}
}

func reportSize(b *testing.B, n int) { b.ReportMetric(float64(n), "packed-bytes") }

// td

func BenchmarkPack_TD(b *testing.B) {
	rec := benchRecord()
	var p []byte
	b.ReportAllocs()
	for b.Loop() {
		p = rec.Pack()
	}
	reportSize(b, len(p))
}

func BenchmarkAppendPack_TD(b *testing.B) {
	rec := benchRecord()
	buf := rec.Pack()
	b.ReportAllocs()
	for b.Loop() {
		buf = rec.AppendPack(buf[:0])
	}
	reportSize(b, len(buf))
}

func BenchmarkUnpack_TD(b *testing.B) {
	p := benchRecord().Pack()
	rec := benchDef.New()
	b.ReportAllocs()
	for b.Loop() {
		if err := rec.Unpack(p); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

// BenchmarkRoundTrip_TD is the full path of one message: fill a reused record,
// pack into a reused buffer, unpack into another reused record.
func BenchmarkRoundTrip_TD(b *testing.B) {
	in, out := benchDef.New(), benchDef.New()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		in.Reset()
		setBench(in)
		buf = in.AppendPack(buf[:0])
		if err := out.Unpack(buf); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(buf))
}

// msgpack of map[string]interface{}

func BenchmarkPack_MsgpackMap(b *testing.B) {
	var p []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = msgpack.Marshal(benchMap()); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

func BenchmarkUnpack_MsgpackMap(b *testing.B) {
	p, _ := msgpack.Marshal(benchMap())
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]interface{}
		if err := msgpack.Unmarshal(p, &m); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

func BenchmarkRoundTrip_MsgpackMap(b *testing.B) {
	var p []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = msgpack.Marshal(benchMap()); err != nil {
			b.Fatal(err)
		}
		var m map[string]interface{}
		if err := msgpack.Unmarshal(p, &m); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

// msgpack of a tagged struct

func BenchmarkPack_MsgpackStruct(b *testing.B) {
	v := benchValue()
	var p []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = msgpack.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

func BenchmarkUnpack_MsgpackStruct(b *testing.B) {
	p, _ := msgpack.Marshal(benchValue())
	b.ReportAllocs()
	for b.Loop() {
		var v benchStruct
		if err := msgpack.Unmarshal(p, &v); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

func BenchmarkRoundTrip_MsgpackStruct(b *testing.B) {
	in := benchValue()
	var p []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = msgpack.Marshal(in); err != nil {
			b.Fatal(err)
		}
		var out benchStruct
		if err := msgpack.Unmarshal(p, &out); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

// encoding/json of the tagged struct

func BenchmarkPack_JSON(b *testing.B) {
	v := benchValue()
	var p []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

func BenchmarkUnpack_JSON(b *testing.B) {
	p, _ := json.Marshal(benchValue())
	b.ReportAllocs()
	for b.Loop() {
		var v benchStruct
		if err := json.Unmarshal(p, &v); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

func BenchmarkRoundTrip_JSON(b *testing.B) {
	in := benchValue()
	var p []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = json.Marshal(in); err != nil {
			b.Fatal(err)
		}
		var out benchStruct
		if err := json.Unmarshal(p, &out); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, len(p))
}

// TestBenchCodecsAgree checks that every benchmarked codec carries the same
// record, so the comparison is fair.
func TestBenchCodecsAgree(t *testing.T) {
	rec := benchDef.New()
	if err := rec.Unpack(benchRecord().Pack()); err != nil {
		t.Fatal(err)
	}
	list, _ := rec.GetAsUint32Array("list")
	users, _ := rec.GetAsBytesArray("users")
	if len(list) != 16 || len(users) != 4 {
		t.Fatalf("td record: %d list, %d users", len(list), len(users))
	}
	for name, codec := range map[string]struct {
		marshal   func(any) ([]byte, error)
		unmarshal func([]byte, any) error
	}{"msgpack": {msgpack.Marshal, msgpack.Unmarshal}, "json": {json.Marshal, json.Unmarshal}} {
		p, err := codec.marshal(benchValue())
		if err != nil {
			t.Fatal(err)
		}
		var v benchStruct
		if err := codec.unmarshal(p, &v); err != nil {
			t.Fatal(err)
		}
		if v.Name != benchName || v.Counter != benchCounter || v.Score != benchScore || len(v.List) != 16 ||
			len(v.Data) != 64 || len(v.Users) != 4 {
			t.Fatalf("%s lost data: %+v", name, v)
		}
	}
	var m map[string]interface{}
	p, _ := msgpack.Marshal(benchMap())
	if err := msgpack.Unmarshal(p, &m); err != nil || len(m) != 6 {
		t.Fatalf("msgpack map: %v, %d keys", err, len(m))
	}
}
