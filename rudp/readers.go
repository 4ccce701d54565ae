package rudp

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/internal/pollwake"
	"golang.org/x/net/ipv4"
)

// Readers: leader/follower.
//
// One goroutine at a time holds the read role (the leader): it reads the
// socket, runs the transport's own handling of every packet and never runs
// code that may block. Reliable messages of a kind Config.MayBlock claims
// are set aside (claimed) while it handles a batch. After the batch, a
// leader with claimed messages hands the role, with its read buffers, to a
// parked follower (or a new goroutine), and only then delivers them: it is
// no longer the read goroutine, and the follower's wake-up happens while
// the messages are being handled instead of before (a follower parked on
// a pollwake.Waker is found by the next thread that polls, typically this
// one once it is done, with no second OS thread woken). When it is done it
// parks as a follower, or ends if enough are parked already. A goroutine
// that delivers is not counted in Transport.wg (Close does not wait for
// code that may block); it counts itself again when it parks.

// maxIdleReaders is how many followers may wait for the read role.
const maxIdleReaders = 2

type readers struct {
	mu     sync.Mutex
	closed bool // Close is about to wait for t.wg: no more Add
	idle   int
	lead   chan *readState // the read role, handed to a follower parked on it
	parked []*follower     // followers parked on a waker
}

// follower is a follower parked on a pollwake.Waker: handing it the read
// role wakes no second OS thread (see internal/pollwake), where a channel
// send to a parked goroutine does in a process whose other threads sleep.
// It is found by the leader's own thread once that one waits, or by any
// other thread that polls (the runtime's sysmon does within 10 ms while a
// leader keeps its thread busy).
type follower struct {
	w  *pollwake.Waker
	st *readState // set before Wake; nil: the transport closes
}

// close stops readers from parking or starting, and ends the followers
// parked on wakers (those on rd.lead see t.done).
func (rd *readers) close() {
	rd.mu.Lock()
	rd.closed = true
	parked := rd.parked
	rd.parked = nil
	rd.mu.Unlock()
	for _, f := range parked {
		f.w.Wake()
	}
}

// claim is one session's frames to deliver after the read role is handed on.
type claim struct {
	s      *session
	frames []frame
	ackNow bool
}

// readState is the read role: the socket buffers go with it.
type readState struct {
	read func() (int, error) // one read (without raw calls)
	raw  *rawReader          // raw calls: the reads run inside serve
	bufs [][]byte
	from []netip.AddrPort

	idle  func()           // t.markIdle, bound once
	empty func()           // t.markCaughtUp, bound once
	batch func(n int) bool // st.handle, bound once
	t     *Transport
}

func (t *Transport) newReadState() *readState {
	st := &readState{t: t, idle: t.markIdle, empty: t.markCaughtUp}
	st.batch = st.handle
	if t.batch != nil && t.batch.raw != nil {
		st.raw = t.batch.raw.newReader(readBatch, readBufSize)
		st.bufs = make([][]byte, readBatch)
		st.from = make([]netip.AddrPort, readBatch)
		return st
	}
	if t.batch != nil {
		msgs := make([]ipv4.Message, readBatch)
		st.bufs = make([][]byte, readBatch)
		st.from = make([]netip.AddrPort, readBatch)
		for i := range msgs {
			st.bufs[i] = make([]byte, readBufSize)
			msgs[i].Buffers = [][]byte{st.bufs[i]}
		}
		st.read = func() (int, error) {
			n, err := t.batch.pc.ReadBatch(msgs, 0)
			for i := range n {
				ap, _ := addrPortOf(msgs[i].Addr)
				st.from[i] = ap
				st.bufs[i] = msgs[i].Buffers[0][:msgs[i].N]
				msgs[i].Addr = nil
			}
			return n, err
		}
		return st
	}
	buf := make([]byte, 64<<10)
	st.bufs = [][]byte{buf}
	st.from = make([]netip.AddrPort, 1)
	st.read = func() (int, error) {
		n, ap, err := t.readFrom(buf)
		st.bufs[0], st.from[0] = buf[:n], ap
		if err != nil {
			return 0, err
		}
		return 1, nil
	}
	return st
}

// serve reads and handles batches of packets; it returns after a batch
// that left claimed messages, after some batches (so the caller looks
// again), or with the error that ended a read.
func (st *readState) serve() error {
	if st.raw != nil {
		return st.raw.serve(st.bufs, st.from, st.idle, st.empty, st.batch)
	}
	st.idle()
	n, err := st.read()
	if err != nil {
		return err
	}
	st.handle(n)
	return nil
}

// markIdle notes that the read loop may be about to wait for the socket
// (behind.go).
func (t *Transport) markIdle() {
	t.rxAt.Store(t.now())
	t.rxBusy.Store(false)
}

// markCaughtUp notes that a read found the socket empty: every packet
// that reached it before that read began is handled (behind.go).
func (t *Transport) markCaughtUp() { t.rxCaught.Store(t.rxAt.Load()) }

// handle handles a batch of n packets read into st.bufs and st.from; it
// reports whether claimed messages wait (the read role must be handed on).
func (st *readState) handle(n int) bool {
	t := st.t
	readAt := t.rxAt.Load()
	t.rxBusy.Store(true)
	if len(st.bufs) == 1 {
		// One datagram per read: whether more wait is not known, so the
		// read's start stands for how far the loop has come.
		t.rxCaught.Store(readAt)
	}
	t.stats.packetsIn.Add(uint64(n))
	var bytes int
	start := t.now()
	for i := range n {
		bytes += len(st.bufs[i])
		t.handlePacket(st.bufs[i], st.from[i])
		if len(t.acksDue) > 0 && i+1 < n && t.now()-start > int64(ackDelay) {
			// A slow batch (large packets, a process short of
			// CPU) does not hold back the acks owed so far: a
			// batch of 32 64 KiB packets took 1.2 s in a loaded
			// race-enabled test, and its sender called us silent.
			t.scheduleAcks()
		}
	}
	t.stats.bytesIn.Add(uint64(bytes))
	t.scheduleAcks()
	switch {
	case n < len(st.bufs):
		// The read took fewer than it could: it emptied the socket, and
		// all that came before it is handled now.
		t.rxCaught.Store(readAt)
	case st.raw != nil && st.raw.stamp != 0:
		// A full batch: all that reached the socket before its last
		// datagram is handled now (FIFO), however long it waited.
		at := t.now() - max(time.Now().UnixNano()-st.raw.stamp, 0)
		if at > t.rxCaught.Load() {
			t.rxCaught.Store(at)
		}
	}
	return len(t.claimed) > 0
}

// readLoop is the leader's loop (st nil: the first leader). Every
// reliable message is delivered from here or by the goroutine it hands
// claimed messages to, which keeps per-peer order. It reads packets in
// batches where the socket allows (recvmmsg) and acknowledges once per
// batch and session, so a burst of segments costs one ack packet.
func (t *Transport) readLoop(st *readState) {
	counted := true
	defer func() {
		if counted {
			t.wg.Done()
		}
	}()
	if st == nil {
		st = t.newReadState()
	}
	for {
		if err := st.serve(); err != nil {
			if t.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.warn.Warn("rudp: read error", "local", t.local, "err", err)
			continue
		}
		if len(t.claimed) > 0 {
			if st = t.handOff(st); st == nil {
				counted = false
				return
			}
		}
	}
}

// handOff passes the read role on, delivers the claimed messages, then
// waits as a follower. It returns the read role when this goroutine is the
// leader again, or nil when it ends (it is then not counted in t.wg).
func (t *Transport) handOff(st *readState) *readState {
	work := t.claimed
	t.claimed = nil
	t.passLead(st)
	t.wg.Done()
	var runs []func()
	for i, c := range work {
		t.deliverClaim(c.s, c.frames, &runs)
		t.finishDelivery(c.s, c.frames, false, &runs)
		work[i] = claim{}
	}
	runAll(runs) // no session's delivery waits for them (Config.OnBlocking)
	t.rd.mu.Lock()
	if t.rd.closed || t.rd.idle >= maxIdleReaders {
		t.rd.mu.Unlock()
		return nil
	}
	t.wg.Add(1) // before Close's Wait, which comes after rd.closed is set
	t.rd.idle++
	var f *follower
	if w := pollwake.Get(); w != nil {
		f = &follower{w: w}
		t.rd.parked = append(t.rd.parked, f)
	}
	t.rd.mu.Unlock()
	st = nil // passed on: only what comes back is ours
	if f != nil {
		f.w.Wait()
		t.rd.mu.Lock()
		st = f.st
		t.rd.mu.Unlock()
		pollwake.Put(f.w)
	} else {
		select {
		case st = <-t.rd.lead:
		case <-t.done:
		}
	}
	t.rd.mu.Lock()
	t.rd.idle--
	t.rd.mu.Unlock()
	if st == nil {
		t.wg.Done()
	}
	return st
}

// passLead gives the read role to a parked follower, or to a new goroutine.
func (t *Transport) passLead(st *readState) {
	t.rd.mu.Lock()
	if k := len(t.rd.parked); k > 0 {
		f := t.rd.parked[k-1]
		t.rd.parked[k-1] = nil
		t.rd.parked = t.rd.parked[:k-1]
		f.st = st
		t.rd.mu.Unlock()
		f.w.Wake()
		return
	}
	t.rd.mu.Unlock()
	select {
	case t.rd.lead <- st:
		return
	default:
	}
	t.rd.mu.Lock()
	if !t.rd.closed {
		t.wg.Add(1)
		go t.readLoop(st)
	}
	t.rd.mu.Unlock()
}
