package mars

import (
	"errors"
	"reflect"
	"testing"
)

func TestNodeStatsRoundTrip(t *testing.T) {
	in := nodeStatsMsg{App: "game", Addr: "127.0.0.1:8000", Inc: 42, Stats: NodeStats{
		MessagesSent: 1, MessagesReceived: 2, MessageSendErrors: 3, RPCs: 1 << 40, RPCErrors: 5,
		DatagramsIn: 6, DatagramsOut: 7, BytesIn: 8, BytesOut: 9, Sessions: 10,
	}, Mars: "10.0.0.2:6789",
		Replicas: []ReplicaStatus{{Addr: "10.0.0.1:6789", State: ReplicaFailed, LastAnswerMs: 5000, FailedMs: 2000},
			{Addr: "10.0.0.2:6789", State: ReplicaInUse, LastAnswerMs: 12}, {Addr: "10.0.0.3:6789", State: ReplicaStandby, LastAnswerMs: -1}},
		Peers: []PeerStat{{Addr: "10.0.1.1:8000", RTTMs: 1.5, Retransmits: 7}, {Addr: "10.0.1.2:8000"}},
	}
	out, err := decodeNodeStats(in.append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*out, in) {
		t.Fatalf("decoded %+v, want %+v", *out, in)
	}
	// A node from before the MARS, replica and peer fields.
	old := appendArrayLen(nil, 4)
	old = appendUint(appendString(appendString(old, "a"), "b"), 1)
	old = appendUint(appendArrayLen(old, 1), 3)
	if out, err := decodeNodeStats(old); err != nil || out.Stats.MessagesSent != 3 || out.Mars != "" || out.Peers != nil {
		t.Fatalf("an old record: %+v, %v", out, err)
	}
	// A newer node may send more counters, more fields, and longer replica
	// and peer entries: all are skipped.
	b := appendArrayLen(nil, 8)
	b = appendString(b, "a")
	b = appendString(b, "b")
	b = appendUint(b, 1)
	b = appendArrayLen(b, nodeStatsFields+2)
	for i := range nodeStatsFields + 2 {
		b = appendUint(b, uint64(i))
	}
	b = appendString(b, "10.0.0.1:6789")
	b = appendArrayLen(b, 1)
	b = appendString(appendString(appendArrayLen(b, 5), "10.0.0.1:6789"), "in use")
	b = appendString(appendUint(appendUint(b, 1), 0), "more")
	b = appendArrayLen(b, 1)
	b = appendUint(appendUint(appendString(appendArrayLen(b, 4), "10.0.1.1:8000"), 2500), 3)
	b = appendString(b, "more")
	b = appendString(b, "extra")
	out, err = decodeNodeStats(b)
	if err != nil || out.Stats.TopicsDelivered != nodeStatsFields-1 || out.Mars != "10.0.0.1:6789" ||
		len(out.Replicas) != 1 || out.Replicas[0].State != "in use" || len(out.Peers) != 1 || out.Peers[0].RTTMs != 2.5 {
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
		"peers":     tooMany(maxPeerStats + 1),
		"bad peer":  append(append(append([]byte(nil), good[:len(good)-1]...), 0x91), 0x92, 0xa0, 0x00),
	} {
		if _, err := decodeNodeStats(p); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", name, err)
		}
	}
}

func FuzzDecodeNodeStats(f *testing.F) {
	f.Add((&nodeStatsMsg{App: "game", Addr: "127.0.0.1:8000", Inc: 7, Stats: NodeStats{RPCs: 3}}).append(nil))
	f.Add([]byte{0x94, 0xa0, 0xa0, 0x00, 0x90})
	f.Add((&nodeStatsMsg{App: "a", Addr: "b", Inc: 1, Mars: "m:1", Replicas: []ReplicaStatus{{Addr: "m:1", State: ReplicaInUse}},
		Peers: []PeerStat{{Addr: "p:1", RTTMs: 3, Retransmits: 2}}}).append(nil))
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := decodeNodeStats(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		again, err := decodeNodeStats(m.append(nil))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoding %+v gives %+v, %v", m, again, err)
		}
	})
}

// tooMany is a record with n peers.
func tooMany(n int) []byte {
	m := nodeStatsMsg{App: "a", Addr: "b", Inc: 1}
	for range n {
		m.Peers = append(m.Peers, PeerStat{Addr: "p:1"})
	}
	return m.append(nil)
}
