package kcp

import "sync"

// Segment buffers come from pools in a few size classes, so that a small
// segment of a session with a large MTU holds a small buffer. The receive
// limit counts buffer capacities, which bounds what a session really holds.

var classes = [...]int{1536, 4 << 10, 8 << 10, 16 << 10, MaxMTU}

var pools [len(classes)]sync.Pool

func init() {
	for i, c := range classes {
		pools[i].New = func() any { b := make([]byte, c); return &b }
	}
}

// classOf is the index of the smallest class holding n bytes (n <= MaxMTU).
func classOf(n int) int {
	for i, c := range classes {
		if n <= c {
			return i
		}
	}
	return len(classes) - 1
}

// bufClass is the capacity of the buffer getBuf(n) returns.
func bufClass(n int) int { return classes[classOf(n)] }

// getBuf returns a buffer of length n (at most MaxMTU) from its class.
func getBuf(n int) []byte {
	bp := pools[classOf(n)].Get().(*[]byte)
	b := (*bp)[:n]
	*bp = nil
	boxes.Put(bp)
	return b
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b []byte) {
	i := classOf(cap(b))
	if cap(b) != classes[i] {
		return
	}
	bp := boxes.Get().(*[]byte)
	*bp = b[:cap(b)]
	pools[i].Put(bp)
}

// boxes recycles the slice headers the pools store, so Get and Put do not
// allocate.
var boxes = sync.Pool{New: func() any { return new([]byte) }}
