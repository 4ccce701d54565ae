package mars

import (
	"reflect"
	"testing"
)

// FuzzDecodeKV feeds arbitrary bytes to the key-value decoders (requests,
// replies, the data file's frames, store records): never a panic, and what
// decodes re-encodes to what decodes equal.
//
//	go test -run=^$ -fuzz=FuzzDecodeKV -fuzztime=60s ./mars
func FuzzDecodeKV(f *testing.F) {
	reqs := []kvReq{
		{ID: 1, Op: kvPut, App: "a", Addr: "127.0.0.1:1", Inc: 7, Seq: 3, Base: 2, Key: "k", Value: []byte("v"), Rev: 5, TTL: 1000, KVID: 9, Flags: kvFlagCAS},
		{ID: 2, Op: kvList, Key: "p/", After: "p/a", Flags: kvFlagKeysOnly},
		{ID: 3, Op: kvWatch, Key: "", Rev: -1, Value: []byte{}},
	}
	for _, r := range reqs {
		f.Add(byte(0), r.append(nil))
	}
	rep := kvReply{ID: 4, Code: kvHeld, Msg: "m", KVID: 1, Rev: 9, Holder: "h:1", TTL: 5, More: true,
		Entries: []kvEntry{{Key: "k", Value: []byte("v"), Rev: 3}, {Key: "d", Rev: 4, Flags: kvEntryDeleted}}}
	f.Add(byte(1), rep.append(nil))
	f.Add(byte(2), appendFrame(appendFrame(nil, &walRec{T: walHeader, ID: 1, Version: walVersion}), &walRec{T: walPut, App: "a", Key: "k", Val: []byte("v"), Rev: 2}))
	f.Add(byte(3), EncodeStoredLease(&StoredLease{Holder: "h:1", Inc: 1, TTL: 1000, SID: 5}))
	f.Add(byte(4), EncodeStoredKVResult(&StoredKVResult{Code: 1, TTL: 2}))
	f.Fuzz(func(t *testing.T, which byte, p []byte) {
		switch which % 5 {
		case 0:
			peekKVID(p)
			r, err := decodeKVReq(p)
			if err != nil {
				return
			}
			again, err := decodeKVReq(r.append(nil))
			if err != nil {
				t.Fatalf("re-encoded request does not decode: %v", err)
			}
			if len(r.Value) == 0 && len(again.Value) == 0 {
				again.Value = r.Value
			}
			if !reflect.DeepEqual(r, again) {
				t.Fatalf("request changed on re-encode:\n%+v\n%+v", r, again)
			}
		case 1:
			r, err := decodeKVReply(p)
			if err != nil {
				return
			}
			if _, err := decodeKVReply(r.append(nil)); err != nil {
				t.Fatalf("re-encoded reply does not decode: %v", err)
			}
		case 2:
			recs, n := readFrames(p)
			if n > len(p) || (n == 0) != (len(recs) == 0) {
				t.Fatalf("%d records in %d of %d bytes", len(recs), n, len(p))
			}
		case 3:
			l, err := DecodeStoredLease(p)
			if err == nil {
				if again, err := DecodeStoredLease(EncodeStoredLease(l)); err != nil || *again != *l {
					t.Fatalf("re-encode: %+v -> %+v, %v", l, again, err)
				}
			}
		case 4:
			r, err := DecodeStoredKVResult(p)
			if err == nil {
				if again, err := DecodeStoredKVResult(EncodeStoredKVResult(r)); err != nil || *again != *r {
					t.Fatalf("re-encode: %+v -> %+v, %v", r, again, err)
				}
			}
		}
	})
}

// The data file's replay takes whatever a torn or corrupt file holds
// without a panic (frames past the first bad one are ignored).
func FuzzKVReplay(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, &walRec{T: walHeader, ID: 1, Rev: 1, Version: walVersion}),
		&walRec{T: walGrant, App: "a", Key: "k", Rev: 2, TTL: 1000, Addr: "h:1", Inc: 1, Seq: 1}))
	f.Fuzz(func(t *testing.T, p []byte) {
		recs, _ := readFrames(p)
		if len(recs) == 0 || recs[0].T != walHeader {
			return
		}
		s := &Server{opts: ServerOptions{}.withDefaults()}
		s.kvInit()
		s.kvReplay(recs)
	})
}
