package mesh

import (
	"bytes"
	"context"
	"testing"
)

// FuzzStreamFrames feeds arbitrary bytes to every stream frame decoder
// (open, the common header, grant, end): none may panic, and what they
// accept must re-encode to the same bytes.
func FuzzStreamFrames(f *testing.F) {
	f.Add(append(appendStreamOpen(nil, streamOpen{sid: 1, cmd: 2, timeoutMs: 3000, flags: streamFlagFirst}), "first"...))
	f.Add(appendStreamOpen(nil, streamOpen{sid: 1 << 60, cmd: 65535}))
	f.Add(append(appendStreamHeader(nil, 9, dirFromAcceptor), "data"...))
	g := appendStreamHeader(nil, 9, dirFromOpener)
	f.Add(appendUint64(appendUint64(g, 3), 300))
	f.Add(append(append(appendStreamHeader(nil, 9, dirFromAcceptor), endError), "boom"...))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		if o, first, err := parseStreamOpen(p); err == nil {
			re := append(appendStreamOpen(nil, o), first...)
			if !bytes.Equal(re, p) {
				t.Fatalf("open %+v re-encodes to %x, not %x", o, re, p)
			}
			if o.flags&streamFlagFirst == 0 && len(first) != 0 {
				t.Fatal("a first message without the flag")
			}
		}
		sid, dir, rest, err := parseStreamHeader(p)
		if err != nil {
			return
		}
		if re := append(appendStreamHeader(nil, sid, dir), rest...); !bytes.Equal(re, p) {
			t.Fatalf("header (%d, %d) re-encodes to %x, not %x", sid, dir, re, p)
		}
		if msgs, n, err := parseStreamGrant(rest); err == nil {
			if re := appendUint64(appendUint64(nil, msgs), n); !bytes.Equal(re, rest) {
				t.Fatalf("grant (%d, %d) re-encodes to %x, not %x", msgs, n, re, rest)
			}
		}
		if status, text, err := parseStreamEnd(rest); err == nil {
			if status > endTimeout || !bytes.Equal(append([]byte{status}, text...), rest) {
				t.Fatalf("end status %d text %q from %x", status, text, rest)
			}
		}
	})
}

// FuzzStreamNode feeds arbitrary stream frames to a live node's message
// handler (as if from itself, so answers stay in the process): nothing may
// panic, and a stream handler's return ends its stream.
func FuzzStreamNode(f *testing.F) {
	c := newCluster(f, 1)
	n := c.nodes[0]
	n.HandleStream(1, func(ctx context.Context, s *Stream) error {
		for range 2 {
			if _, err := s.Recv(); err != nil {
				return err
			}
		}
		return nil
	})
	f.Add(byte(0), append(appendStreamOpen(nil, streamOpen{sid: 1, cmd: 1, flags: streamFlagFirst}), "first"...))
	f.Add(byte(1), append(appendStreamHeader(nil, 1, dirFromOpener), "data"...))
	f.Add(byte(2), appendUint64(appendUint64(appendStreamHeader(nil, 1, dirFromOpener), 1), 5))
	f.Add(byte(4), append(appendStreamHeader(nil, 1, dirFromOpener), endCancelled, 'x'))
	f.Add(byte(5), appendStreamHeader(nil, 1, dirFromAcceptor))
	f.Fuzz(func(t *testing.T, k byte, p []byte) {
		kind := kindStreamOpen + k%6
		n.onMessage(n.self, kind, bytes.Clone(p), k < 128)
	})
}
