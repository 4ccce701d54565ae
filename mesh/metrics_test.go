package mesh

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestMetricsHooksDoNotAllocate: the hooks on the send and RPC paths are
// atomic adds on counters created once per command ID.
func TestMetricsHooksDoNotAllocate(t *testing.T) {
	var m meshMetrics
	var ok error
	fail := fmt.Errorf("%w: x", ErrRequestTimeout)
	m.cmd(300) // created once
	allocs := testing.AllocsPerRun(1000, func() {
		start := time.Now()
		m.rpcDone(tableRPC, 300, start, &ok)
		m.rpcDone(tableRPC, 300, start, &fail)
		m.sentDone(300, &ok)
		m.delivered(300)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round of hooks, want 0", allocs)
	}
}

func TestMetricsOutcomes(t *testing.T) {
	var m meshMetrics
	for _, err := range []error{
		nil,
		&RemoteError{Addr: "a", Cmd: 5, Message: "no"},
		fmt.Errorf("%w: late", ErrRequestTimeout),
		sendErr("a", errors.New("down")),
		fmt.Errorf("%w: refused", ErrUnhealthy),
	} {
		m.rpcDone(tableRPC, 5, time.Now().Add(-2*time.Millisecond), &err)
	}
	m.rpcDone(tableInternal, 5, time.Now(), new(error)) // health checks are not counted
	s := m.cmd(5)
	want := [numOutcomes]uint64{outcomeOK: 1, outcomeRemoteError: 1, outcomeTimeout: 1, outcomeSendError: 2}
	for o := range want {
		if got := s.rpcs[o].Load(); got != want[o] {
			t.Errorf("%s: %d, want %d", outcomeNames[o], got, want[o])
		}
	}
	var n uint64
	for i := range s.buckets {
		n += s.buckets[i].Load()
	}
	if n != 5 || s.buckets[0].Load() != 0 {
		t.Errorf("histogram holds %d observations (%d in the first bucket), want 5 above 2 ms", n, s.buckets[0].Load())
	}
	ids := 0
	m.each(func(id uint16, _ *cmdStats) {
		if id != 5 {
			t.Errorf("unexpected command %d", id)
		}
		ids++
	})
	if ids != 1 {
		t.Errorf("%d commands, want 1", ids)
	}
	for _, v := range []uint16{0, 7, 10, 65535} {
		if got := itoa(v); got != fmt.Sprint(v) {
			t.Errorf("itoa(%d) = %q", v, got)
		}
	}
}
