package rudp

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestFrameDecoderLargeBody: large frames cut into pieces of random
// sizes come out whole, and the decoder never holds more than twice what
// it was fed of the current frame (plus the first piece, maxPrealloc).
func TestFrameDecoderLargeBody(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	body := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	bodies := [][]byte{body(3<<20 + 17), body(0), body(maxPrealloc), body(maxPrealloc + 1), body(MaxMessageSize)}
	var stream []byte
	for i, b := range bodies {
		stream = appendFrame(stream, byte(i), len(b), [][]byte{b}, i == 1)
	}
	var d frameDecoder
	var got []frame
	var nows []bool
	emit := func(f frame, now bool) { got, nows = append(got, f), append(nows, now) }
	fed := 0 // bytes fed since the last frame ended
	for rest := stream; len(rest) > 0; {
		n := min(1+rng.IntN(20000), len(rest))
		before := len(got)
		if err := d.feed(rest[:n], emit); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		fed += n
		if len(got) > before {
			fed = 0 // roughly: the current frame began in this piece
			continue
		}
		if held := d.heldBytes(); held > maxPrealloc && held > 2*fed+maxPrealloc {
			t.Fatalf("decoder holds %d bytes after %d bytes of the frame", held, fed)
		}
	}
	if len(got) != len(bodies) {
		t.Fatalf("%d frames, want %d", len(got), len(bodies))
	}
	for i := range got {
		if got[i].kind != byte(i) || !bytes.Equal(got[i].bytes(), bodies[i]) || nows[i] != (i == 1) {
			t.Fatalf("frame %d: kind %d, %d bytes, ackNow %v", i, got[i].kind, len(got[i].bytes()), nows[i])
		}
	}
	if got[0].parts != nil || got[0].payload == nil {
		t.Fatal("bytes did not join the pieces")
	}
}
