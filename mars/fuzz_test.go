package mars

import (
	"reflect"
	"testing"
)

// FuzzDecodeMessage feeds arbitrary bytes of every MARS kind to the
// decoders. They must never panic or allocate out of proportion to the
// input; a report that decodes must survive a re-encode unchanged; and
// metadata values the decoder accepts must decode with the msgpack library
// (what every node does with them).
//
//	go test -run=^$ -fuzz=FuzzDecodeMessage -fuzztime=60s ./mars
func FuzzDecodeMessage(f *testing.F) {
	vals, _ := encodeValues(map[string]interface{}{"a": 1, "b": []interface{}{"x", 2.5, nil}, "c": map[string]interface{}{"d": true}})
	reports := []report{
		{App: "app", Addr: "127.0.0.1:8000", Inc: 1 << 63, MarsInc: 7, Ver: 1 << 40, From: 3, Seq: 9},
		{Addr: "h:1", Inc: 1, Info: &nodeInfo{Type: "UDP", Role: "UDP", Status: StatusTaken, EndPoint: "e:1", Values: vals}},
		{Addr: "h:1", Inc: 1, Flags: flagGuest, Ops: []op{{Seq: 1, Key: "k", Val: -5}, {Seq: 2, Key: "d", Del: true}, {Seq: 3, Key: "a", Val: 2, Add: true}}},
		{Addr: "h:1", Inc: 1, Seed: []kv{{"s", -32768}, {"t", 32767}}, SeedAt: 1700000000000},
		{Addr: "h:1", Inc: 1, MarsInc: 3, Ver: 9, Digest: &digest{total: 1 << 60, buckets: []uint16{1, 2, 3, 1 << 15}}},
		{Addr: "h:1", Inc: 1, Life: StateDraining, Digest: &digest{total: 5, buckets: make([]uint16, 512)}},
	}
	for _, r := range reports {
		f.Add(KindReport, r.append(nil))
	}
	l := leave{App: "x", Addr: "a:1", Inc: 3}
	f.Add(KindLeave, l.append(nil))
	e := errorMsg{Addr: "a:1", Code: CodeBadKey, Message: "m", Echo: 5}
	f.Add(KindError, e.append(nil))
	rec := appendRecord(nil, &nodeRecord{Addr: "a:1", Inc: 1, Type: "T", Status: StatusOnline, Values: vals})
	body := (&bodyBuilder{nodes: [][]byte{rec}, states: []State{StateDraining}, gone: []string{"g:1"},
		goneWhy: []byte{goneLeft}, keys: []kv{{"k", 1}}, dropped: []string{"d"}}).build()
	f.Add(KindSync, appendSync(nil, &syncHead{Addr: "a:1", MarsInc: 1, Flags: syncFull, To: 5}, body[0]))
	f.Add(KindSync, appendSync(nil, &syncHead{Addr: "a:1", MarsInc: 1}, nil))
	a := newAppState("", new(uint64))
	a.addNode(&nodeEntry{addr: "a:1", inc: 1, info: nodeInfo{Type: "T", Status: StatusOnline}, alive: true, life: StateOnline})
	a.setKey("k", 3)
	for _, diff := range [][]int{nil, {0, 3}} {
		body := a.bucketBody(4, diff)
		f.Add(KindSync, appendSync(nil, &syncHead{Addr: "a:1", MarsInc: 1, Flags: syncFull | syncBuckets, To: a.ver}, body[0]))
	}
	f.Add(KindSync, appendSync(nil, &syncHead{Addr: "a:1", MarsInc: 1, Flags: syncWait, From: 3, To: 3}, nil))
	f.Add(byte(0x4E), []byte{0x90})

	f.Fuzz(func(t *testing.T, kind byte, p []byte) {
		node := peekNode(kind, p) // a replica's read goroutine peeks at every report and leave
		m, err := decodeMessage(kind, p)
		if r, ok := m.(*report); ok && err == nil && node != r.Addr {
			t.Fatalf("peekNode %q, report addr %q", node, r.Addr)
		}
		if err != nil {
			return
		}
		if v, ok := m.(*report); ok {
			again, err := decodeReport(v.append(nil))
			if err != nil {
				t.Fatalf("re-encoded report does not decode: %v", err)
			}
			if !reflect.DeepEqual(again, v) {
				t.Fatalf("report changed on re-encode:\n%+v\n%+v", v, again)
			}
			if v.Info != nil && len(v.Info.Values) > 0 {
				if checkValues(v.Info.Values) != nil {
					t.Fatal("accepted values fail checkValues")
				}
				decodeValues(v.Info.Values)
			}
		}
		if kind == KindSync {
			_, r, fields, _ := decodeSyncHead(p)
			var b syncBody
			if decodeSyncBody(&r, fields, &b) == nil {
				for _, n := range b.Nodes {
					decodeValues(n.Values)
				}
			}
		}
	})
}
