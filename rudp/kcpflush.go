package rudp

import (
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	_ "unsafe" // for go:linkname

	kcp "github.com/xtaci/kcp-go/v5"
)

// kcpFlush pushes what the KCP state machine holds (acks, new and due
// segments) to its output callback now.
//
// kcp-go exports Send, Input, Recv, Update and Check but keeps flush
// unexported; Update only flushes once per interval (>= 10 ms), which would
// add up to 10 ms to every message. UDPSession calls flush directly after
// Write; rudp needs the same, so it links to the method. Linking to a
// method whose signature changed is undefined behaviour, so New refuses to
// start with a kcp-go version not in kcpTested (see checkKCPVersion).
//
//go:linkname kcpFlush github.com/xtaci/kcp-go/v5.(*KCP).flush
func kcpFlush(k *kcp.KCP, ft kcp.FlushType) uint32

// kcpModule is kcp-go's module path.
const kcpModule = "github.com/xtaci/kcp-go/v5"

// kcpTested lists the kcp-go versions rudp was tested with: the ones whose
// (*KCP).flush has the signature kcpFlush assumes. Add a version only
// after reading its flush and running the rudp tests with it.
var kcpTested = []string{"v5.6.72"}

var kcpVersionErr = sync.OnceValue(func() error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil // no module information in this binary: nothing to check
	}
	return checkKCPVersion(bi.Deps)
})

// checkKCPVersion fails unless the kcp-go module among deps (after any
// replace directive) is a tested version.
func checkKCPVersion(deps []*debug.Module) error {
	for _, d := range deps {
		if d.Path != kcpModule {
			continue
		}
		v := d.Version
		if d.Replace != nil {
			v = d.Replace.Version
		}
		if slices.Contains(kcpTested, v) {
			return nil
		}
		if v == "" {
			v = "a local replacement (" + d.Replace.Path + ")"
		}
		return fmt.Errorf("%w: the binary links %s %s; rudp links into its unexported (*KCP).flush and was tested only with %v: require one of them in go.mod",
			ErrKCPVersion, kcpModule, v, kcpTested)
	}
	return nil
}
