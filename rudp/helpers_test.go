package rudp

import (
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// inbox collects what a transport delivers, for tests.
type inbox struct {
	mu    sync.Mutex
	cond  *sync.Cond
	msgs  []received
	downs []peerDown
	ups   []netip.AddrPort
}

type received struct {
	from     netip.AddrPort
	kind     byte
	payload  []byte
	reliable bool
}

type peerDown struct {
	addr netip.AddrPort
	err  error
	at   time.Time
}

func newInbox() *inbox {
	b := &inbox{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *inbox) config(c Config) Config {
	c.OnMessage = func(from netip.AddrPort, kind byte, payload []byte, reliable bool) {
		b.mu.Lock()
		b.msgs = append(b.msgs, received{from, kind, payload, reliable})
		b.cond.Broadcast()
		b.mu.Unlock()
	}
	c.OnPeerDown = func(addr netip.AddrPort, err error) {
		b.mu.Lock()
		b.downs = append(b.downs, peerDown{addr, err, time.Now()})
		b.cond.Broadcast()
		b.mu.Unlock()
	}
	c.OnPeerUp = func(addr netip.AddrPort, _ uint64) {
		b.mu.Lock()
		b.ups = append(b.ups, addr)
		b.cond.Broadcast()
		b.mu.Unlock()
	}
	return c
}

// waitFor blocks until cond (evaluated under the inbox lock) holds or the
// timeout passes; it reports whether cond held.
func (b *inbox) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		b.cond.Wait()
	}
	return true
}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// suiteKey, with RUDP_TEST_KEYED=1 in the environment, is given to every
// transport the helpers start without keys: the whole suite runs keyed.
var suiteKey = func() [][32]byte {
	if os.Getenv("RUDP_TEST_KEYED") != "1" {
		return nil
	}
	k, _ := GenerateKey()
	return [][32]byte{k}
}()

func withSuiteKey(cfg Config) Config {
	if len(cfg.Keys) == 0 {
		cfg.Keys = suiteKey
	}
	return cfg
}

// listenUDP starts a transport on a real loopback UDP port.
func listenUDP(t testing.TB, cfg Config) *Transport {
	t.Helper()
	cfg = withSuiteKey(cfg)
	tr, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// listenMem starts a transport on a faultnet endpoint.
func listenMem(t testing.TB, n *faultnet.Network, cfg Config) *Transport {
	t.Helper()
	c, err := n.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(c, withSuiteKey(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}
