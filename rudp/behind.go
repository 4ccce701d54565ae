package rudp

// Liveness judged from the read loop's point of view. A peer is silent
// when no packet of it reached this transport for RetryTimeout; packets
// that reached the socket but not yet the read loop (its goroutine busy
// with a long batch, or woken but not yet run in a process short of CPU)
// say nothing about the peer. Seen under load in a race-enabled test
// process: a read loop that handled nothing for 1.5 s, and a timer loop
// that woke 1.1-1.4 s late, while the peer kept sending.

// behind reports whether the read loop may not yet have seen packets that
// reached the socket by limit (the moment a silence verdict would count
// from): it is handling a batch and has not yet handled what reached the
// socket by limit, or it waits with datagrams unread in the socket, or
// this sweep runs late (the process was short of CPU: the read loop had no
// turn either). sweep defers the verdict then and looks again after
// sweepEvery. How far the loop has come (rxCaught) is the start of its
// last read that found the socket empty, or the kernel's arrival stamp of
// the last datagram of a full batch: with a backlog each read begins just
// now, but its packets may have waited for seconds (a race-enabled
// publisher acknowledged by 30 subscriber processes on 2 cores, 9-40 s
// behind, called all of them silent at once so).
func (t *Transport) behind(limit int64) bool {
	switch {
	case t.lateSweep:
		return true
	case t.rxBusy.Load():
		return t.rxCaught.Load() <= limit
	}
	return t.batch != nil && t.batch.raw != nil && t.batch.raw.unread()
}
