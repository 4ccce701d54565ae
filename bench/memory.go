package main

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// memResult is the heap held per idle session.
type memResult struct {
	Sessions      int
	HeapPerSess   float64 // bytes of live heap per session
	GoroutinesPer float64
	Setup         time.Duration
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// measureSessionMemory makes sessions+1 rudp transports, then has one of
// them (or a mesh node, viaMesh) send one 64-byte reliable message to each
// of the others, and reports the live heap that the now idle sessions hold
// (both ends of each session: the dialer's and the acceptor's).
func measureSessionMemory(sessions int, viaMesh bool) (memResult, error) {
	var delivered atomic.Int64
	peers := make([]*rudp.Transport, 0, sessions)
	defer func() {
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Add(1)
			go func() { defer wg.Done(); p.Abort() }()
		}
		wg.Wait()
	}()
	for range sessions {
		p, err := rudp.Listen("127.0.0.1:0", rudp.Config{Logger: quiet,
			OnMessage: func(netip.AddrPort, byte, []byte, bool) { delivered.Add(1) }})
		if err != nil {
			return memResult{}, fmt.Errorf("transport %d of %d: %w", len(peers)+1, sessions, err)
		}
		peers = append(peers, p)
	}
	var send func(to netip.AddrPort, msg []byte) error
	if viaMesh {
		c, err := newMeshCluster(1)
		if err != nil {
			return memResult{}, err
		}
		defer c.Close()
		n := c.nodes[0]
		send = func(to netip.AddrPort, msg []byte) error { return n.Send(cmdSink, to.String(), msg) }
	} else {
		d, err := rudp.Listen("127.0.0.1:0", rudp.Config{Logger: quiet})
		if err != nil {
			return memResult{}, err
		}
		defer d.Abort()
		send = func(to netip.AddrPort, msg []byte) error { return d.Send(to, 1, msg) }
	}
	time.Sleep(100 * time.Millisecond) // let every loop reach its idle state
	h0, g0 := liveHeap(), runtime.NumGoroutine()
	start := time.Now()
	msg := make([]byte, 64)
	for _, p := range peers {
		if err := send(p.LocalAddr(), msg); err != nil {
			return memResult{}, err
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for delivered.Load() < int64(sessions) {
		if time.Now().After(deadline) {
			return memResult{}, fmt.Errorf("%d of %d messages delivered in 20 s", delivered.Load(), sessions)
		}
		time.Sleep(5 * time.Millisecond)
	}
	setup := time.Since(start)
	time.Sleep(200 * time.Millisecond) // acks settle; sessions go idle
	h1, g1 := liveHeap(), runtime.NumGoroutine()
	if delivered.Load() != int64(sessions) {
		return memResult{}, errors.New("unexpected extra deliveries")
	}
	return memResult{
		Sessions:      sessions,
		HeapPerSess:   (float64(h1) - float64(h0)) / float64(sessions),
		GoroutinesPer: float64(g1-g0) / float64(sessions),
		Setup:         setup,
	}, nil
}
