package mars

import (
	"errors"
	"testing"
)

func TestNodeStatsRoundTrip(t *testing.T) {
	in := nodeStatsMsg{App: "game", Addr: "127.0.0.1:8000", Inc: 42, Stats: NodeStats{
		MessagesSent: 1, MessagesReceived: 2, MessageSendErrors: 3, RPCs: 1 << 40, RPCErrors: 5,
		DatagramsIn: 6, DatagramsOut: 7, BytesIn: 8, BytesOut: 9, Sessions: 10,
	}}
	out, err := decodeNodeStats(in.append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if *out != in {
		t.Fatalf("decoded %+v, want %+v", *out, in)
	}
	// A newer node may send more counters and more fields: both are skipped.
	b := appendArrayLen(nil, 5)
	b = appendString(b, "a")
	b = appendString(b, "b")
	b = appendUint(b, 1)
	b = appendArrayLen(b, nodeStatsFields+2)
	for i := range nodeStatsFields + 2 {
		b = appendUint(b, uint64(i))
	}
	b = appendString(b, "extra")
	out, err = decodeNodeStats(b)
	if err != nil || out.Stats.Sessions != nodeStatsFields-1 {
		t.Fatalf("decoded %+v, %v", out, err)
	}
}

func TestNodeStatsRefused(t *testing.T) {
	good := (&nodeStatsMsg{App: "a", Addr: "b", Inc: 1}).append(nil)
	many := appendArrayLen(nil, 4)
	many = appendString(appendString(many, "a"), "b")
	many = appendArrayLen(appendUint(many, 1), maxNodeStatsFields+1)
	for name, p := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		"short":     appendArrayLen(nil, 3),
		"counters":  many,
	} {
		if _, err := decodeNodeStats(p); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", name, err)
		}
	}
}

func FuzzDecodeNodeStats(f *testing.F) {
	f.Add((&nodeStatsMsg{App: "game", Addr: "127.0.0.1:8000", Inc: 7, Stats: NodeStats{RPCs: 3}}).append(nil))
	f.Add([]byte{0x94, 0xa0, 0xa0, 0x00, 0x90})
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := decodeNodeStats(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		again, err := decodeNodeStats(m.append(nil))
		if err != nil || *again != *m {
			t.Fatalf("re-encoding %+v gives %+v, %v", m, again, err)
		}
	})
}
