package mars

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"
)

// Issue 10, MARS side: 100,000 random and mutated datagrams at MARS while
// nodes sync. Nothing breaks, MARS answers none of them, and its heap stays
// bounded.

// junkDatagram returns the i-th hostile datagram: random bytes, truncated
// headers, forged kinds and huge length fields of every rudp packet type.
func junkDatagram(rng *rand.Rand, i int, buf []byte) []byte {
	b := buf[:0]
	switch i % 8 {
	case 0: // random bytes, random length
		b = append(b, make([]byte, rng.IntN(1400))...)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
	case 1: // truncated headers of each packet type
		b = append(b, []byte{0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0x14}[rng.IntN(9)])
		for range rng.IntN(20) {
			b = append(b, byte(rng.Uint32()))
		}
	case 2: // an unreliable datagram of a MARS kind with a random or valid body
		b = append(b, 0x02, KindMin+byte(rng.IntN(int(KindMax-KindMin)+1)))
		if rng.IntN(2) == 0 {
			r := report{Addr: fmt.Sprintf("10.9.%d.%d:7000", rng.IntN(256), rng.IntN(256)), Inc: rng.Uint64(), Seq: 1,
				Info: &nodeInfo{Status: StatusOnline}, Ops: []op{{Seq: 1, Key: "junk", Val: 1}}}
			b = r.append(b)
		} else {
			for range rng.IntN(200) {
				b = append(b, byte(rng.Uint32()))
			}
		}
	case 3: // a fragment announcing a huge count
		b = append(b, 0x03, KindReport)
		b = binary.BigEndian.AppendUint32(b, rng.Uint32())
		b = binary.BigEndian.AppendUint16(b, uint16(rng.Uint32()))
		b = binary.BigEndian.AppendUint16(b, 0xffff)
		b = append(b, make([]byte, rng.IntN(1300))...)
	case 4: // KCP with random segments (huge lengths included)
		b = append(b, 0x01)
		for range 1 + rng.IntN(60) {
			b = binary.LittleEndian.AppendUint32(b, rng.Uint32())
		}
	case 5: // a batch with lengths beyond the datagram
		b = append(b, 0x04, KindReport, 0xff, 0xff, 0x90)
	default: // control frames with random incarnations
		b = append(b, byte(0x10+rng.IntN(5)))
		b = binary.BigEndian.AppendUint64(b, rng.Uint64())
		b = binary.BigEndian.AppendUint64(b, rng.Uint64())
		b = binary.BigEndian.AppendUint32(b, rng.Uint32())
	}
	return b
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestHostileRandomDatagramsAtMars(t *testing.T) {
	const total = 100_000
	s := startServer(t, "", fastOpts())
	a := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	b := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	waitFor(t, 5*time.Second, "cluster up", func() bool { return b.c.View().Len() == 2 })
	before := heapInUse()

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 0, 2048)
	to := net.UDPAddrFromAddrPort(s.Addr())
	deadline := time.Now().Add(60 * time.Second)
	val := int16(0)
	for i := 0; i < total && time.Now().Before(deadline); i++ {
		conn.WriteToUDP(junkDatagram(rng, i, buf), to)
		if i%1000 == 999 {
			time.Sleep(time.Millisecond) // let MARS read rather than the kernel drop
		}
		if i%20_000 == 0 { // the nodes keep working meanwhile
			val++
			a.c.SetSharedData("k", val)
		}
	}
	want := val
	waitFor(t, 10*time.Second, "a change still reaches the other node", func() bool {
		v, ok := b.c.View().SharedData("k")
		return ok && v == want
	})
	if _, ok := b.c.View().SharedData("junk"); ok {
		t.Error("a junk datagram set a shared key")
	}
	if n := b.c.View().Len(); n != 2 {
		t.Errorf("%d nodes listed after the flood, want 2", n)
	}
	if !hasNode(b.c.View(), a.c.Addr(), online) {
		t.Error("node a not listed online after the flood")
	}
	after := heapInUse()
	grew := int64(after) - int64(before)
	t.Logf("heap %d -> %d bytes (%+d); MARS stats %+v", before, after, grew, s.Stats())
	if grew > 32<<20 {
		t.Errorf("heap grew by %d bytes during the flood, want at most 32 MiB", grew)
	}
}
