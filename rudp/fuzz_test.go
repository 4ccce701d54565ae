package rudp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// FuzzFrameDecoder feeds arbitrary bytes, cut into arbitrary pieces, to the
// frame decoder: it must never panic, never hand out more than it was
// given, and whatever it emits must be exactly the frames at the front of
// the input.
func FuzzFrameDecoder(f *testing.F) {
	var two []byte
	two = appendFrame(two, 1, 3, [][]byte{[]byte("abc")}, false)
	two = appendFrame(two, 2, 0, nil, true)
	f.Add(two, uint8(1))
	f.Add(two, uint8(7))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1}, uint8(2))
	f.Add(binary.BigEndian.AppendUint32(nil, MaxMessageSize), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var d frameDecoder
		var out []byte
		emitted := 0
		emit := func(f frame, ackNow bool) {
			p := f.bytes()
			out = appendFrame(out, f.kind, len(p), [][]byte{p}, ackNow)
			emitted += len(p)
		}
		chunk := int(step%32) + 1
		var err error
		for rest := data; len(rest) > 0 && err == nil; {
			n := min(chunk, len(rest))
			err = d.feed(rest[:n], emit)
			rest = rest[n:]
		}
		if emitted > len(data) {
			t.Fatalf("emitted %d payload bytes from %d input bytes", emitted, len(data))
		}
		if !bytes.HasPrefix(data, out) {
			t.Fatal("emitted frames are not the input's leading frames")
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v does not wrap ErrProtocol", err)
		}
		if held := d.heldBytes(); held > maxPrealloc && held > 2*len(data) {
			t.Fatalf("decoder holds %d bytes for %d bytes of input", held, len(data))
		}
	})
}

// FuzzReassembly feeds a sequence of fragment packets (split out of the
// fuzz input) to the reassembler: no panic, memory within the limit, and
// every completed message is exactly the concatenation of its parts.
func FuzzReassembly(f *testing.F) {
	full := bytes.Repeat([]byte{7}, MaxSize)
	seed := append(fragment(1, 0, 2, full), fragment(1, 1, 2, []byte("end"))...)
	f.Add(seed, uint16(len(fragment(1, 0, 2, full))))
	f.Add(fragment(2, 0, 3, full), uint16(20))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		const limit = 64 << 10
		r := newReassembler(limit, time.Second)
		from := netip.MustParseAddrPort("127.0.0.1:9")
		step := int(cut)%(fragmentHeaderSize+MaxSize) + 1
		now := int64(0)
		for len(data) > 0 {
			n := min(step, len(data))
			kind, msg, err := r.add(from, data[:n], now)
			if err == nil && msg != nil {
				if len(msg) <= MaxSize || len(msg) > MaxMessageSize {
					t.Fatalf("reassembled %d bytes (kind %d)", len(msg), kind)
				}
			}
			if _, held := r.pending(); held > limit {
				t.Fatalf("holding %d bytes, limit %d", held, limit)
			}
			data = data[n:]
			now += int64(100 * time.Millisecond)
		}
	})
}

// FuzzPacket throws arbitrary packets at a live transport that has an
// established session with the sender's address: nothing may panic, and
// the transport keeps working afterwards.
func FuzzPacket(f *testing.F) {
	f.Add([]byte{pktKCP, 1, 2, 3, 4, 81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f})
	f.Add(handshake{typ: pktSyn, src: 42, dtok: 7}.append(nil))
	f.Add(handshake{typ: pktAck, src: 42, dtok: 7, rtok: 9}.append(nil))
	f.Add(tagged{typ: pktRst, conv: 1}.append(nil))
	f.Add(tagged{typ: pktNoSess, conv: 1, tag: 5}.append(nil))
	f.Add([]byte{pktDatagram, 1, 'h', 'i'})
	f.Add([]byte{pktDatagramBatch, 1, 0, 2, 'h', 'i', 2, 0, 0})
	f.Add(fragment(1, 0, 2, make([]byte, MaxSize)))
	a := listenUDP(f, Config{})
	bIn := newInbox()
	b := listenUDP(f, bIn.config(Config{}))
	if err := a.Send(b.LocalAddr(), 1, []byte("up")); err != nil {
		f.Fatal(err)
	}
	bIn.waitFor(2*time.Second, func() bool { return len(bIn.msgs) == 1 })
	f.Fuzz(func(t *testing.T, p []byte) {
		// Straight into the receive path, as if a read it from the socket.
		b.handlePacket(p, a.LocalAddr())
		// With the live session's conv, KCP itself parses the rest.
		if s := b.lookup(a.LocalAddr()); s != nil && len(p) >= 5 && p[0] == pktKCP {
			s.mu.Lock()
			conv := s.conv
			s.mu.Unlock()
			q := append([]byte(nil), p...)
			binary.LittleEndian.PutUint32(q[1:], conv)
			b.handlePacket(q, a.LocalAddr())
		}
	})
}
