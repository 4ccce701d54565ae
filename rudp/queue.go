package rudp

// fifo is a slice-backed queue of uint64 that reuses its storage.
type fifo struct {
	buf  []uint64
	head int
}

func (q *fifo) len() int      { return len(q.buf) - q.head }
func (q *fifo) push(v uint64) { q.buf = append(q.buf, v) }
func (q *fifo) front() uint64 { return q.buf[q.head] }
func (q *fifo) reset()        { q.buf, q.head = q.buf[:0], 0 }
func (q *fifo) pop() (v uint64) {
	v = q.buf[q.head]
	q.head++
	if q.head == len(q.buf) {
		q.reset()
	} else if q.head > 1024 && q.head*2 > len(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		q.buf, q.head = q.buf[:n], 0
	}
	return v
}

// signal lets goroutines wait for "something changed" under a mutex the
// caller holds. It allocates a channel only while someone waits.
type signal struct{ ch chan struct{} }

func (s *signal) wait() <-chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) broadcast() {
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
