package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// rpcTarget is one system's request/response path, set up for one payload
// size: a server that echoes the request, and a client.
type rpcTarget interface {
	// Prepare is called before each run with its concurrency.
	Prepare(conc int) error
	// Call sends req (owned by the calling worker) and waits for the echo.
	// It is safe for concurrent use.
	Call(req []byte) error
	// Close stops every goroutine, server and socket the target started.
	Close() error
}

// rpcSystem starts a target for a payload size.
type rpcSystem struct {
	name    string // as shown in tables
	key     string // short, for flags and JSON
	maxSize int    // largest payload it can carry (0: any)
	start   func(payload int) (rpcTarget, error)
}

func rpcSystems() []rpcSystem {
	return []rpcSystem{
		{name: "marsmesh SendRPC", key: sysMarsmesh, start: startMeshRPC},
		{name: "gRPC unary", key: sysGRPC, start: startGRPCRPC},
		{name: "NATS request", key: sysNATS, start: startNATSRPC},
		{name: "kcp-go echo", key: sysKCP, start: startKCPRPC},
		{name: "raw UDP", key: sysUDP, maxSize: maxUDPPayload, start: startUDPRPC},
	}
}

// System keys, as in the JSON results.
const (
	sysMarsmesh      = "marsmesh"
	sysMarsmeshUSend = "marsmesh-usend"
	sysGRPC          = "grpc"
	sysNATS          = "nats"
	sysKCP           = "kcp"
	sysUDP           = "udp"
)

// callTimeout bounds one request of the reliable systems.
const callTimeout = 3 * time.Second

var errShortReply = errors.New("reply has the wrong size")

// runResult is what one closed-loop run measured.
type runResult struct {
	Done     int64
	Errors   int64
	Elapsed  time.Duration
	Lat      []time.Duration
	Cost     cost
	TimedOut bool // stopped by the time limit, not the count
	// ErrKinds counts failed requests by error text (numbers and
	// addresses left in), at most 8 distinct texts.
	ErrKinds map[string]int64
}

// runClosedLoop runs conc workers, each sending one request and waiting for
// its reply before the next, until count requests are claimed or d passes.
// Every request's latency is recorded.
func runClosedLoop(t rpcTarget, payload, conc int, count int64, d time.Duration, measure bool) runResult {
	var claimed, errs atomic.Int64
	var kindsMu sync.Mutex
	kinds := map[string]int64{}
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	var c costMeter
	if measure {
		c.start()
	}
	start := time.Now()
	deadline := start.Add(d)
	var timedOut atomic.Bool
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, payload)
			for i := range req {
				req[i] = byte(i)
			}
			own := make([]time.Duration, 0, min(count/int64(conc)+1, 1<<20))
			for {
				if claimed.Add(1) > count {
					break
				}
				t0 := time.Now()
				if t0.After(deadline) {
					timedOut.Store(true)
					break
				}
				if err := t.Call(req); err != nil {
					errs.Add(1)
					kindsMu.Lock()
					if _, ok := kinds[err.Error()]; ok || len(kinds) < 8 {
						kinds[err.Error()]++
					}
					kindsMu.Unlock()
					continue
				}
				own = append(own, time.Since(t0))
			}
			lats[w] = own
		}()
	}
	wg.Wait()
	el := time.Since(start)
	r := runResult{Errors: errs.Load(), Elapsed: el, TimedOut: timedOut.Load(), ErrKinds: kinds}
	if measure {
		r.Cost = c.stop()
	}
	for _, l := range lats {
		r.Done += int64(len(l))
		r.Lat = append(r.Lat, l...)
	}
	return r
}

// checkEcho reports a reply of the wrong size.
func checkEcho(got, want int) error {
	if got != want {
		return fmt.Errorf("%w: %d bytes, sent %d", errShortReply, got, want)
	}
	return nil
}
