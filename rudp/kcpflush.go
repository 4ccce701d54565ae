package rudp

import (
	_ "unsafe" // for go:linkname

	kcp "github.com/xtaci/kcp-go/v5"
)

// kcpFlush pushes what the KCP state machine holds (acks, new and due
// segments) to its output callback now.
//
// kcp-go v5.6.72 exports Send, Input, Recv, Update and Check but keeps flush
// unexported; Update only flushes once per interval (>= 10 ms), which would
// add up to 10 ms to every message. UDPSession calls flush directly after
// Write; rudp needs the same, so it links to the method. go.mod pins the
// version and TestKCPFlushLinked fails loudly if the symbol ever changes.
//
//go:linkname kcpFlush github.com/xtaci/kcp-go/v5.(*KCP).flush
func kcpFlush(k *kcp.KCP, ft kcp.FlushType) uint32
