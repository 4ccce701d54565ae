package rudp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

func patterned(id, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(id*13 + i*3)
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(p, uint32(id))
	}
	return p
}

func TestUnreliableSizesOverUDP(t *testing.T) {
	a := listenUDP(t, Config{})
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	sizes := []int{0, 1, MaxSize, MaxSize + 1, 60000}
	for i, n := range sizes {
		if err := a.USend(b.LocalAddr(), byte(i), patterned(i, n)); err != nil {
			t.Fatal(err)
		}
	}
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == len(sizes) }) {
		t.Fatalf("got %d of %d unreliable messages on loopback", bIn.count(), len(sizes))
	}
	got := map[byte][]byte{}
	for _, m := range bIn.msgs {
		if m.reliable {
			t.Fatal("unreliable message marked reliable")
		}
		got[m.kind] = m.payload
	}
	for i, n := range sizes {
		if !bytes.Equal(got[byte(i)], patterned(i, n)) {
			t.Fatalf("size %d: got %d bytes", n, len(got[byte(i)]))
		}
	}
	if err := a.USend(b.LocalAddr(), 1, make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized USend: %v", err)
	}
}

// TestUnreliableWholeOrNothing: under loss, duplication and reordering a
// split message arrives intact or not at all.
func TestUnreliableWholeOrNothing(t *testing.T) {
	n := faultnet.New(4)
	n.SetFaults(faultnet.Faults{Loss: 0.02, Duplicate: 0.05, Reorder: 0.1})
	bIn := newInbox()
	a := listenMem(t, n, Config{})
	b := listenMem(t, n, bIn.config(Config{}))
	const count = 300
	for i := range count {
		size := MaxSize + 1
		if i%2 == 1 {
			size = 60000
		}
		if err := a.USend(b.LocalAddr(), 3, patterned(i, size)); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the reassembly TTL to pass, so everything that will
	// arrive has arrived (reordered packets are held 2 ms).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if msgs, _ := b.reasm.pending(); msgs == 0 && bIn.count() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	bIn.mu.Lock()
	defer bIn.mu.Unlock()
	seen := map[int]int{}
	for _, m := range bIn.msgs {
		id := int(binary.BigEndian.Uint32(m.payload))
		size := MaxSize + 1
		if id%2 == 1 {
			size = 60000
		}
		if !bytes.Equal(m.payload, patterned(id, size)) {
			t.Fatalf("message %d arrived damaged (%d bytes)", id, len(m.payload))
		}
		seen[id]++
	}
	small, large := 0, 0
	for id := range seen {
		if id%2 == 0 {
			small++
		} else {
			large++
		}
	}
	t.Logf("delivered %d of %d split messages of 1301 B, %d of %d of 60000 B", small, count/2, large, count/2)
	if small == 0 || large == 0 {
		t.Fatal("nothing got through at 2% loss")
	}
}

func fragment(id uint32, idx, count int, part []byte) []byte {
	b := []byte{pktFragment, 9}
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint16(b, uint16(idx))
	b = binary.BigEndian.AppendUint16(b, uint16(count))
	return append(b, part...)
}

func TestReassemblyBoundsAndTTL(t *testing.T) {
	from := netip.MustParseAddrPort("127.0.0.1:1")
	r := newReassembler(100_000, time.Second)
	full := bytes.Repeat([]byte{1}, MaxSize)
	// Many incomplete messages: memory stays under the limit.
	for id := range uint32(1000) {
		if _, msg, err := r.add(from, fragment(id, 0, 3, full), 0); err != nil || msg != nil {
			t.Fatal(err, msg)
		}
		if _, held := r.pending(); held > 100_000 {
			t.Fatalf("holding %d bytes, limit 100000", held)
		}
	}
	// A part claiming more parts than the limit can hold is refused.
	if _, _, err := r.add(from, fragment(5000, 0, maxFragments, full), 0); !errors.Is(err, errFragLimit) {
		t.Fatalf("huge count: %v, want errFragLimit", err)
	}
	if _, held := r.pending(); held > 100_000 {
		t.Fatalf("holding %d bytes", held)
	}
	// Past the TTL everything goes.
	r.expire(int64(2 * time.Second))
	if msgs, held := r.pending(); msgs != 0 || held != 0 {
		t.Fatalf("after TTL: %d messages, %d bytes held", msgs, held)
	}
	// A message completes only when every part is in.
	r.add(from, fragment(7, 1, 2, []byte("tail")), 0)
	kind, msg, err := r.add(from, fragment(7, 0, 2, full), 0)
	if err != nil || kind != 9 || len(msg) != MaxSize+4 || string(msg[MaxSize:]) != "tail" {
		t.Fatalf("reassembled kind %d, %d bytes, err %v", kind, len(msg), err)
	}
	// Malformed parts are refused.
	bad := [][]byte{
		{pktFragment, 1, 2},
		fragment(8, 0, 1, full),                  // count 1
		fragment(8, 2, 2, full),                  // index past count
		fragment(8, 0, 2, []byte("short")),       // non-final part not full
		fragment(8, 1, 2, nil),                   // empty final part
		fragment(8, 0, maxFragments+1, full),     // too many parts
		fragment(8, 1, 2, append(full, 1, 2, 3)), // final part too long
	}
	for i, p := range bad {
		if _, _, err := r.add(from, p, 0); err == nil {
			t.Fatalf("bad fragment %d accepted", i)
		}
	}
}

// TestUnreliableBatching: a burst of small unreliable messages shares
// datagrams, and each message still arrives intact and separate.
func TestUnreliableBatching(t *testing.T) {
	a := listenUDP(t, Config{})
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	const count = 2000
	before := a.Stats().PacketsOut
	for i := range count {
		if err := a.USend(b.LocalAddr(), byte(i), patterned(i, 4+i%200)); err != nil {
			t.Fatal(err)
		}
	}
	if !bIn.waitFor(5*time.Second, func() bool { return len(bIn.msgs) == count }) {
		t.Fatalf("got %d of %d on loopback", bIn.count(), count)
	}
	packets := a.Stats().PacketsOut - before
	t.Logf("%d messages in %d datagrams", count, packets)
	if packets >= count {
		t.Fatalf("%d datagrams for %d messages: no batching", packets, count)
	}
	seen := map[int]bool{}
	for _, m := range bIn.msgs {
		id := int(binary.BigEndian.Uint32(m.payload))
		if m.kind != byte(id) || !bytes.Equal(m.payload, patterned(id, 4+id%200)) || seen[id] {
			t.Fatalf("message %d damaged or repeated", id)
		}
		seen[id] = true
	}
	// A malformed batch delivers nothing.
	before = uint64(bIn.count())
	b.handlePacket([]byte{pktDatagramBatch, 1, 0, 5, 'a', 'b'}, a.LocalAddr())
	if uint64(bIn.count()) != before {
		t.Fatal("a truncated batch delivered something")
	}
}

// TestUnreliableBatchingWithSession: where a session with the peer knows
// it reads large datagrams (loopback UDP, CAPS), a burst of 1 KiB
// unreliable messages shares large datagrams; every message arrives
// intact.
func TestUnreliableBatchingWithSession(t *testing.T) {
	if suiteKey != nil {
		t.Skip("keyed: the datagram sizes are checked in TestKeySealedPacketsFit")
	}
	a := listenUDP(t, Config{})
	bIn := newInbox()
	b := listenUDP(t, bIn.config(Config{}))
	if err := a.Send(b.LocalAddr(), 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool {
		s := a.lookup(b.LocalAddr())
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.peerPacket > MaxPacketSize
	})
	if a.udatagramLimit(b.LocalAddr()) <= MaxPacketSize {
		t.Skip("the path to the peer has no large MTU here")
	}
	const count = 1000
	// How many messages share a datagram depends on how soon the flusher
	// runs (on an idle core at once: one or two per datagram). So the
	// burst is sent while the flusher is not told of it, as when it is
	// late, and then flushed in one go: the batch must use the session's
	// large datagrams.
	d := a.udestFor(b.LocalAddr())
	d.mu.Lock()
	d.queued, d.lastSend = true, a.now()
	d.mu.Unlock()
	st0 := a.Stats()
	for i := range count {
		if err := a.USend(b.LocalAddr(), 2, patterned(i, 1024)); err != nil {
			t.Fatal(err)
		}
	}
	a.flushDatagrams([]*udest{d})
	if !bIn.waitFor(10*time.Second, func() bool { return len(bIn.msgs) == count+1 }) {
		t.Fatalf("got %d of %d on loopback", bIn.count()-1, count)
	}
	st := a.Stats()
	packets, bytes := st.PacketsOut-st0.PacketsOut, st.BytesOut-st0.BytesOut
	t.Logf("%d messages of 1 KiB in %d datagrams, %d bytes each on average", count, packets, bytes/packets)
	if packets >= count/2 || bytes/packets <= MaxPacketSize {
		t.Fatalf("%d datagrams of %d bytes on average for %d messages of 1 KiB: not in large datagrams", packets, bytes/packets, count)
	}
	bIn.mu.Lock()
	defer bIn.mu.Unlock()
	for _, m := range bIn.msgs[1:] {
		id := int(binary.BigEndian.Uint32(m.payload))
		if m.kind != 2 || string(m.payload) != string(patterned(id, 1024)) {
			t.Fatalf("message %d damaged", id)
		}
	}
}

// TestUnreliableBatchDialsSession: without keys, a stream of unreliable
// messages to a peer with no session dials one in the background, so that
// later batches can use the large datagrams the peer's CAPS allow; a
// stream to an address nobody answers from ends its dial quietly (no
// OnPeerDown).
func TestUnreliableBatchDialsSession(t *testing.T) {
	if suiteKey != nil {
		t.Skip("keyed: every unreliable message is sealed on a session (uwrite dials)")
	}
	aIn, bIn := newInbox(), newInbox()
	cfg := Config{RetryTimeout: 500 * time.Millisecond} // the dead address's dial ends soon
	a := listenUDP(t, aIn.config(cfg))
	b := listenUDP(t, bIn.config(cfg))
	for i := range 100 {
		if err := a.USend(b.LocalAddr(), 1, patterned(i, 64)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, func() bool {
		s := a.lookup(b.LocalAddr())
		if s == nil {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.state == stateEstablished && s.peerPacket > MaxPacketSize
	})
	// Nobody answers at a silent socket: the dial ends, and nobody is told.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	dead := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range 100 {
		if err := a.USend(dead, 1, patterned(i, 64)); err != nil {
			t.Fatal(err)
		}
	}
	if a.lookup(dead) == nil {
		t.Fatal("a stream to an address without a session dialed nothing")
	}
	waitUntil(t, 20*time.Second, func() bool { return a.lookup(dead) == nil })
	aIn.mu.Lock()
	defer aIn.mu.Unlock()
	if len(aIn.downs) != 0 && !(len(aIn.downs) == 1 && aIn.downs[0].addr == b.LocalAddr()) {
		t.Fatalf("the unanswered dial was reported: %v %v", aIn.downs[0].addr, aIn.downs[0].err)
	}
}
