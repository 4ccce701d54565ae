package mars

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestIsMarsKind(t *testing.T) {
	for k := 0; k < 256; k++ {
		want := k >= 0x40 && k <= 0x4F
		if IsMarsKind(byte(k)) != want {
			t.Fatalf("IsMarsKind(0x%02x) = %v", k, !want)
		}
	}
}

func TestPrimitivesAgreeWithMsgpack(t *testing.T) {
	// Our hand-written encoder must produce what the msgpack library reads.
	for _, v := range []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		var got uint64
		if err := msgpack.Unmarshal(appendUint(nil, v), &got); err != nil || got != v {
			t.Fatalf("uint %d: %d %v", v, got, err)
		}
		r := reader{b: appendUint(nil, v)}
		if r.uint() != v || r.err != nil {
			t.Fatalf("reader uint %d", v)
		}
	}
	for _, v := range []int64{0, -1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64, 5, math.MaxInt64} {
		var got int64
		if err := msgpack.Unmarshal(appendInt(nil, v), &got); err != nil || got != v {
			t.Fatalf("int %d: %d %v", v, got, err)
		}
		r := reader{b: appendInt(nil, v)}
		if r.int() != v || r.err != nil {
			t.Fatalf("reader int %d: %v", v, r.err)
		}
	}
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("x", n)
		var got string
		if err := msgpack.Unmarshal(appendString(nil, s), &got); err != nil || got != s {
			t.Fatalf("string of %d: %v", n, err)
		}
		b := appendArrayLen(nil, n)
		for range n {
			b = appendNil(b)
		}
		var arr []interface{}
		if err := msgpack.Unmarshal(b, &arr); err != nil || len(arr) != n {
			t.Fatalf("array of %d: %v", n, err)
		}
		b = appendMapLen(nil, n)
		for i := range n {
			b = appendString(b, strings.Repeat("k", i%40)+string(rune('a'+i%26))+string(rune(i)))
			b = appendNil(b)
		}
		r := reader{b: b}
		if r.mapLen() != n || r.err != nil {
			t.Fatalf("map of %d: %v", n, r.err)
		}
	}
}

func TestReportRoundTrip(t *testing.T) {
	vals, err := encodeValues(map[string]interface{}{"a": 1, "b": []interface{}{"x", 2.5}, "c": map[string]interface{}{"d": true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []report{
		{App: "app", Addr: "127.0.0.1:8000", Inc: math.MaxUint64, MarsInc: 7, Ver: 1 << 40, From: 3, Seq: 9},
		{Addr: "h:1", Inc: 1, Info: &nodeInfo{Type: "UDP", Role: "UDP", Status: StatusTaken, EndPoint: "e:1", Values: vals}},
		{Addr: "h:1", Inc: 1, Flags: flagGuest, Ops: []op{{Seq: 1, Key: "k", Val: -5}, {Seq: 2, Key: "d", Del: true}}},
		{Addr: "h:1", Inc: 1, Seed: []kv{{"s", math.MinInt16}, {"t", math.MaxInt16}}, SeedAt: 1700000000000},
	} {
		b := r.append(nil)
		got, err := decodeReport(b)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !reflect.DeepEqual(*got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", *got, r)
		}
		for i := range b { // every truncation is an error, never a panic
			if _, err := decodeReport(b[:i]); err == nil {
				t.Fatalf("truncated to %d bytes: accepted", i)
			}
		}
	}
}

func TestHeartbeatSize(t *testing.T) {
	r := report{App: "game", Addr: "10.0.12.34:8000", Inc: 0x8000000000000000, MarsInc: 0x8000000000000000, Ver: 123456, From: 12, Seq: 12}
	hb := r.append(nil)
	h := syncHead{Addr: r.Addr, MarsInc: r.MarsInc, Echo: 12, Ack: 12, From: 123456, To: 123456}
	reply := appendSync(nil, &h, nil)
	t.Logf("heartbeat %d bytes, empty sync %d bytes", len(hb), len(reply))
	if len(hb) > 64 || len(reply) > 64 {
		t.Fatalf("heartbeat %d bytes, reply %d bytes: want a few dozen", len(hb), len(reply))
	}
}

func TestSyncRoundTrip(t *testing.T) {
	vals, _ := encodeValues(map[string]interface{}{"x": "y"})
	var recs [][]byte
	nodes := []nodeRecord{
		{Addr: "a:1", Inc: 1, Type: "T", Role: "R", Status: StatusOnline, EndPoint: "p:1", Values: vals},
		{Addr: "b:2", Inc: 2, Status: StatusOffline},
	}
	for i := range nodes {
		recs = append(recs, appendRecord(nil, &nodes[i]))
	}
	bb := bodyBuilder{nodes: recs, states: []State{StateOnline, StateOffline}, gone: []string{"c:3"},
		goneWhy: []byte{goneLeft}, keys: []kv{{"k", 1}}, dropped: []string{"d"}}
	parts := bb.build()
	if len(parts) != 1 {
		t.Fatalf("%d parts", len(parts))
	}
	h := syncHead{Addr: "a:1", MarsInc: 9, Flags: syncFull, Part: 0, Echo: 4, Ack: 3, From: 0, To: 77}
	msg := appendSync(nil, &h, parts[0])
	gh, r, fields, err := decodeSyncHead(msg)
	if err != nil || gh != h {
		t.Fatalf("head %+v %v", gh, err)
	}
	var body syncBody
	if err := decodeSyncBody(&r, fields, &body); err != nil {
		t.Fatal(err)
	}
	want := syncBody{Nodes: nodes, Gone: []string{"c:3"}, Keys: []kv{{"k", 1}}, Dropped: []string{"d"},
		States: []State{StateOnline, StateOffline}, GoneWhy: []byte{goneLeft}}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("body\n got %+v\nwant %+v", body, want)
	}
	for i := range msg {
		if _, err := decodeMessage(KindSync, msg[:i]); err == nil {
			t.Fatalf("truncated sync of %d bytes accepted", i)
		}
	}
}

func TestBodyBuilderSplitsLargeBodies(t *testing.T) {
	var bb bodyBuilder
	for i := range 60_000 {
		bb.keys = append(bb.keys, kv{strings.Repeat("k", 40) + string(rune('a'+i%26)), int16(i)})
	}
	parts := bb.build()
	if len(parts) < 4 {
		t.Fatalf("%d parts for ~2.6 MB", len(parts))
	}
	total := 0
	for _, p := range parts {
		if len(p) > syncPartSize+64<<10 {
			t.Fatalf("part of %d bytes", len(p))
		}
		r := reader{b: p}
		var b syncBody
		if err := decodeSyncBody(&r, 6, &b); err != nil {
			t.Fatal(err)
		}
		total += len(b.Keys)
	}
	if total != 60_000 {
		t.Fatalf("%d keys across parts", total)
	}
}

func TestErrorAndLeaveRoundTrip(t *testing.T) {
	e := errorMsg{Addr: "a:1", Code: CodeBadKey, Message: strings.Repeat("m", 1000), Echo: 5}
	got, err := decodeError(e.append(nil))
	if err != nil || got.Code != CodeBadKey || len(got.Message) != maxMessage || got.Echo != 5 {
		t.Fatalf("%+v %v", got, err)
	}
	l := leave{App: "x", Addr: "a:1", Inc: 3}
	gl, err := decodeLeave(l.append(nil))
	if err != nil || *gl != l {
		t.Fatalf("%+v %v", gl, err)
	}
}

func TestCheckValues(t *testing.T) {
	good, _ := msgpack.Marshal(map[string]interface{}{"a": []interface{}{1, "x", nil, true, 1.5, []byte{1}},
		"m": map[string]interface{}{"n": int64(-5)}})
	if err := checkValues(good); err != nil {
		t.Fatal(err)
	}
	intKeys, _ := msgpack.Marshal(map[int]int{1: 2})
	nestedIntKeys, _ := msgpack.Marshal(map[string]interface{}{"a": map[int]int{1: 2}})
	notMap, _ := msgpack.Marshal([]int{1})
	for name, b := range map[string][]byte{
		"int keys":        intKeys,
		"nested int keys": nestedIntKeys,
		"not a map":       notMap,
		"too deep":        deepValues(maxValueDepth + 2),
		"truncated":       good[:len(good)-1],
		"trailing":        append(append([]byte{}, good...), 1),
		"huge count":      {0xdf, 0xff, 0xff, 0xff, 0xff},
		"bad code":        {0x81, 0xa1, 'k', 0xc1},
	} {
		if err := checkValues(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckKeyAndApp(t *testing.T) {
	if CheckKey("") == nil || CheckKey(strings.Repeat("x", 55)) == nil || CheckKey(strings.Repeat("x", 54)) != nil {
		t.Fatal("CheckKey bounds")
	}
	for _, bad := range []string{strings.Repeat("a", 65), "a\tb", "a\x7fb", "\xff", "line\n"} {
		if err := CheckApp(bad); !errors.Is(err, ErrBadApp) {
			t.Errorf("CheckApp(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"", "game", "ゲーム-1", strings.Repeat("a", 64), "with space"} {
		if err := CheckApp(good); err != nil {
			t.Errorf("CheckApp(%q) = %v", good, err)
		}
	}
}

func TestDecodeValuesOneTypePerKind(t *testing.T) {
	b, _ := encodeValues(map[string]interface{}{"i": 5, "u": uint8(200), "f": float32(1.5), "s": "x", "bin": []byte("y")})
	m := decodeValues(b)
	want := map[string]interface{}{"i": int64(5), "u": int64(200), "f": float64(1.5), "s": "x", "bin": "y"}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("%#v", m)
	}
	if !bytes.Equal(b, mustEncode(t, map[string]interface{}{"u": uint8(200), "s": "x", "i": 5, "f": float32(1.5), "bin": []byte("y")})) {
		t.Fatal("values encoding is not deterministic")
	}
}

func mustEncode(t *testing.T, m map[string]interface{}) []byte {
	b, err := encodeValues(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
