package kcp

// segmentHeap holds out-of-order received segments, the lowest sequence
// number on top (a binary heap on a slice: no boxing), with a set of the
// sequence numbers held to spot repeats.
type segmentHeap struct {
	segs  []segment
	marks map[uint32]struct{}
}

func (h *segmentHeap) Len() int { return len(h.segs) }

func (h *segmentHeap) has(sn uint32) bool {
	_, ok := h.marks[sn]
	return ok
}

// top is the segment with the lowest sequence number; Len must be > 0.
func (h *segmentHeap) top() *segment { return &h.segs[0] }

func (h *segmentHeap) less(i, j int) bool { return _itimediff(h.segs[i].sn, h.segs[j].sn) < 0 }

func (h *segmentHeap) push(s segment) {
	if h.marks == nil {
		h.marks = make(map[uint32]struct{})
	}
	h.marks[s.sn] = struct{}{}
	h.segs = append(h.segs, s)
	for i := len(h.segs) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.segs[i], h.segs[p] = h.segs[p], h.segs[i]
		i = p
	}
}

// pop removes and returns the top segment; Len must be > 0.
func (h *segmentHeap) pop() segment {
	s := h.segs[0]
	last := len(h.segs) - 1
	h.segs[0] = h.segs[last]
	h.segs[last] = segment{}
	h.segs = h.segs[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.less(l, m) {
			m = l
		}
		if r < last && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.segs[i], h.segs[m] = h.segs[m], h.segs[i]
		i = m
	}
	delete(h.marks, s.sn)
	if last == 0 && cap(h.segs) > 64 {
		h.segs, h.marks = nil, nil // give back what a burst of reordering grew
	}
	return s
}
