package rudp

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// A flood of random and mutated datagrams (issue 10): random bytes,
// truncated headers, huge length fields, forged kinds, at a transport that
// is exchanging reliable messages with another. Nothing reliable is lost,
// no session ends, and the heap stays bounded.

const floodCount = 100_000

// hostileDatagram builds datagram i of the flood.
func hostileDatagram(rng *rand.Rand, i int) []byte {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		return b
	}
	types := []byte{pktKCP, pktDatagram, pktFragment, pktDatagramBatch, pktSyn, pktSynAck, pktPing, pktFin, pktRst, pktAck, pktNoSess}
	switch i % 8 {
	case 0: // random bytes
		return rnd(rng.IntN(MaxPacketSize + 200))
	case 1: // a known type, truncated
		return append([]byte{types[rng.IntN(len(types))]}, rnd(rng.IntN(40))...)
	case 2: // fragments with any index, count and size
		b := []byte{pktFragment, byte(rng.Uint32())}
		b = binary.BigEndian.AppendUint32(b, rng.Uint32()%64)
		b = binary.BigEndian.AppendUint16(b, uint16(rng.Uint32()))
		count := []uint16{2, 3, uint16(maxFragments), 0xffff, uint16(rng.Uint32())}[rng.IntN(5)]
		b = binary.BigEndian.AppendUint16(b, count)
		return append(b, rnd([]int{MaxSize, rng.IntN(MaxSize + 50)}[rng.IntN(2)])...)
	case 3: // batches announcing huge lengths
		b := []byte{pktDatagramBatch}
		for range rng.IntN(4) {
			b = append(b, byte(rng.Uint32()))
			b = binary.BigEndian.AppendUint16(b, uint16(rng.Uint32()))
			b = append(b, rnd(rng.IntN(100))...)
		}
		return b
	case 4: // handshakes with random fields
		return handshake{typ: []byte{pktSyn, pktSynAck, pktAck}[rng.IntN(3)], src: rng.Uint64(), dst: rng.Uint64(),
			dtok: rng.Uint64(), rtok: rng.Uint64()}.append(nil)
	case 5: // control packets with random tags
		return tagged{typ: []byte{pktPing, pktFin, pktRst, pktNoSess}[rng.IntN(4)], conv: rng.Uint32(), tag: rng.Uint64()}.append(nil)
	case 6: // KCP with a random conversation and a huge length field
		b := []byte{pktKCP}
		b = binary.LittleEndian.AppendUint32(b, rng.Uint32())
		b = append(b, []byte{81, 82, 83, 84, byte(rng.Uint32())}[rng.IntN(5)], 0)
		b = binary.LittleEndian.AppendUint16(b, uint16(rng.Uint32()))
		b = binary.LittleEndian.AppendUint32(b, rng.Uint32())
		b = binary.LittleEndian.AppendUint32(b, rng.Uint32())
		b = binary.LittleEndian.AppendUint32(b, rng.Uint32())
		b = binary.LittleEndian.AppendUint32(b, []uint32{0xffffffff, rng.Uint32(), 10}[rng.IntN(3)])
		return append(b, rnd(rng.IntN(200))...)
	default: // unreliable datagrams of forged kinds
		return append([]byte{pktDatagram, byte(rng.Uint32())}, rnd(rng.IntN(64))...)
	}
}

// exchange sends n reliable messages each way between a and b and checks
// that every one arrives once, in order, from the right peer.
func exchange(t *testing.T, a *Transport, aIn *inbox, b *Transport, bIn *inbox, n int, during func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		during()
	}()
	go func() {
		for i := range n {
			p := binary.BigEndian.AppendUint32(nil, uint32(i))
			if err := b.Send(a.LocalAddr(), 200, p, make([]byte, i%3000)); err != nil {
				t.Errorf("b send %d: %v", i, err)
				return
			}
		}
	}()
	for i := range n {
		p := binary.BigEndian.AppendUint32(nil, uint32(i))
		if err := a.Send(b.LocalAddr(), 200, p, make([]byte, i%3000)); err != nil {
			t.Fatalf("a send %d: %v", i, err)
		}
		if i%100 == 0 {
			time.Sleep(time.Millisecond) // spread the exchange over the flood
		}
	}
	<-done
	check := func(name string, in *inbox, from netip.AddrPort) {
		t.Helper()
		reliable := func() []received {
			var out []received
			for _, m := range in.msgs {
				if m.reliable {
					out = append(out, m)
				}
			}
			return out
		}
		if !in.waitFor(60*time.Second, func() bool { return len(reliable()) >= n }) {
			in.mu.Lock()
			got := len(reliable())
			in.mu.Unlock()
			t.Fatalf("%s: %d of %d reliable messages", name, got, n)
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		for i, m := range reliable() {
			if m.from != from || m.kind != 200 || binary.BigEndian.Uint32(m.payload) != uint32(i) || len(m.payload) != 4+i%3000 {
				t.Fatalf("%s: reliable message %d wrong (from %s, kind %d, %d bytes)", name, i, m.from, m.kind, len(m.payload))
			}
		}
	}
	check("a->b", bIn, a.LocalAddr())
	check("b->a", aIn, b.LocalAddr())
	noDowns(t, aIn, bIn)
}

func floodConfig() Config {
	c := forgeConfig()
	c.ReassemblyLimit = 4 << 20
	return c
}

// TestHostileFloodUDP: an attacker's socket on loopback sends the flood
// to a's port while a and b exchange messages.
func TestHostileFloodUDP(t *testing.T) {
	aIn, bIn := newInbox(), newInbox()
	a := listenUDP(t, aIn.config(floodConfig()))
	b := listenUDP(t, bIn.config(floodConfig()))
	attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	before := heapInUse()
	rng := rand.New(rand.NewPCG(600, 0))
	to := net.UDPAddrFromAddrPort(a.LocalAddr())
	exchange(t, a, aIn, b, bIn, 2000, func() {
		for i := range floodCount {
			attacker.WriteToUDP(hostileDatagram(rng, i), to)
			if i%64 == 0 {
				time.Sleep(50 * time.Microsecond) // let the receive buffer drain a little
			}
		}
	})
	after := heapInUse()
	st := a.Stats()
	bad := st.BadPackets + st.AuthFailures // keyed (RUDP_TEST_KEYED=1): they do not open
	t.Logf("flood: %d bad packets counted at a, heap %d -> %d bytes", bad, before, after)
	if bad < floodCount/4 {
		t.Fatalf("only %d bad packets counted", bad)
	}
	if after > before+16<<20 {
		t.Fatalf("heap grew from %d to %d bytes", before, after)
	}
}

// TestHostileFloodForgedSource: over faultnet the flood comes "from" b's
// own address, at a, while a and b exchange messages.
func TestHostileFloodForgedSource(t *testing.T) {
	n := faultnet.New(601)
	aIn, bIn := newInbox(), newInbox()
	a := listenMem(t, n, aIn.config(floodConfig()))
	b := listenMem(t, n, bIn.config(floodConfig()))
	before := heapInUse()
	rng := rand.New(rand.NewPCG(602, 0))
	exchange(t, a, aIn, b, bIn, 2000, func() {
		for i := range floodCount {
			n.Inject(b.LocalAddr(), a.LocalAddr(), hostileDatagram(rng, i))
			if i%64 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	})
	after := heapInUse()
	t.Logf("flood: %d bad packets counted at a, heap %d -> %d bytes", a.Stats().BadPackets, before, after)
	if after > before+16<<20 {
		t.Fatalf("heap grew from %d to %d bytes", before, after)
	}
}
