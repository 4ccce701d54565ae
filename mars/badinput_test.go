package mars

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

// rawPeer is a bare rudp transport that sends MARS whatever a test wants
// and collects the error replies.
type rawPeer struct {
	tr   *rudp.Transport
	mu   sync.Mutex
	errs []*errorMsg
	sync int
}

func newRawPeer(t *testing.T) *rawPeer {
	t.Helper()
	p := &rawPeer{}
	tr, err := rudp.Listen("127.0.0.1:0", rudp.Config{
		Logger:       quietLogger(),
		CloseTimeout: 100 * time.Millisecond,
		OnMessage: func(_ netip.AddrPort, kind byte, b []byte, _ bool) {
			p.mu.Lock()
			defer p.mu.Unlock()
			switch kind {
			case KindError:
				if e, err := decodeError(b); err == nil {
					p.errs = append(p.errs, e)
				}
			case KindSync:
				p.sync++
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.tr = tr
	t.Cleanup(func() { tr.Close() })
	return p
}

func (p *rawPeer) errCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.errs)
}

func (p *rawPeer) lastErr() *errorMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errs[len(p.errs)-1]
}

func encodeReport(r report) []byte { return r.append(nil) }

func TestBadInputIsRefusedAndOthersKeepWorking(t *testing.T) {
	s := startServer(t, "", fastOpts())
	good := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	watcher := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	waitFor(t, 2*time.Second, "cluster up", func() bool { return watcher.c.View().Len() == 2 })

	raw := newRawPeer(t)
	rawAddr := raw.tr.LocalAddr().String() // a report must come from the address it lists
	info := &nodeInfo{Type: "t", Status: StatusOnline}
	valid := encodeReport(report{App: "x", Addr: "10.0.0.9:1", Inc: 1, Info: info})
	withOp := func(inc uint64, key string) []byte {
		return encodeReport(report{Addr: rawAddr, Inc: inc, Seq: 1, Info: info, Ops: []op{{Seq: 1, Key: key, Val: 1}}})
	}
	syncMsg := appendSync(nil, &syncHead{Addr: "x"}, nil)
	cases := []struct {
		name    string
		kind    byte
		payload []byte
		code    int
	}{
		{"empty", KindReport, nil, CodeBadMessage},
		{"garbage", KindReport, []byte{0xc1, 0xff, 0x00}, CodeBadMessage},
		{"not an array", KindReport, appendString(nil, "hello"), CodeBadMessage},
		{"truncated", KindReport, valid[:len(valid)/2], CodeBadMessage},
		{"trailing bytes", KindReport, append(append([]byte{}, valid...), 0x00), CodeBadMessage},
		{"array count beyond the message", KindReport, []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, CodeBadMessage},
		{"oversized", KindReport, make([]byte, MaxReportSize+1), CodeBadMessage},
		{"wrong protocol version", KindReport, append([]byte{0x99, 0x07}, valid[2:]...), CodeBadMessage},
		{"unknown kind", 0x4E, []byte{0x90}, CodeBadMessage},
		{"sync sent to MARS", KindSync, syncMsg, CodeBadMessage},
		{"bad leave", KindLeave, []byte{0x93, 0x01}, CodeBadMessage},
		{"55-byte key", KindReport, withOp(1, strings.Repeat("k", 55)), CodeBadKey},
		{"empty key", KindReport, withOp(2, ""), CodeBadKey},
		{"65-byte app", KindReport, encodeReport(report{App: strings.Repeat("a", 65), Addr: "h:1", Inc: 1}), CodeBadApp},
		{"control char in app", KindReport, encodeReport(report{App: "a\x00b", Addr: "h:1", Inc: 1}), CodeBadApp},
		{"invalid UTF-8 app", KindReport, encodeReport(report{App: "\xff\xfe", Addr: "h:1", Inc: 1}), CodeBadApp},
		{"empty address", KindReport, encodeReport(report{Inc: 1, Info: info}), CodeBadNode},
		{"bad status", KindReport, encodeReport(report{Addr: "h:1", Inc: 1, Info: &nodeInfo{Status: 7}}), CodeBadNode},
		{"values not a map", KindReport, encodeReport(report{Addr: "h:1", Inc: 1,
			Info: &nodeInfo{Status: 1, Values: appendString(nil, "x")}}), CodeBadMessage},
		{"values nested too deep", KindReport, encodeReport(report{Addr: "h:1", Inc: 1,
			Info: &nodeInfo{Status: 1, Values: deepValues(100)}}), CodeBadMessage},
	}
	for i, tc := range cases {
		if err := raw.tr.Send(s.Addr(), tc.kind, tc.payload); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		waitFor(t, 2*time.Second, tc.name+": error reply", func() bool { return raw.errCount() > i })
		if e := raw.lastErr(); int(e.Code) != tc.code {
			t.Errorf("%s: code %d (%s), want %d", tc.name, e.Code, e.Message, tc.code)
		}
	}
	if st := s.Stats(); st.Bad < uint64(len(cases)) {
		t.Errorf("Stats().Bad = %d, want >= %d", st.Bad, len(cases))
	}
	// Every other node is still served.
	good.c.SetSharedData("still-working", 1)
	waitFor(t, 2*time.Second, "good node still served", func() bool {
		_, ok := watcher.c.View().SharedData("still-working")
		return ok
	})
	if hasNode(watcher.c.View(), rawAddr, nil) == false {
		t.Error("a report with one bad key should still register its node")
	}
}

// deepValues is a values map nested n levels deep.
func deepValues(n int) []byte {
	b := []byte{}
	for range n {
		b = appendMapLen(b, 1)
		b = appendString(b, "k")
	}
	return appendNil(b)
}

func TestRequireApp(t *testing.T) {
	opts := fastOpts()
	opts.RequireApp = true
	s := startServer(t, "", opts)
	n := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval})
	waitFor(t, 2*time.Second, "refusal surfaced", func() bool {
		var re *RemoteError
		return errors.As(n.c.LastError(), &re) && re.Code == CodeBadApp
	})
	named := startNode(t, s.Addr().String(), ClientConfig{Interval: fastInterval, App: "game"})
	<-named.c.Ready()
}

func TestLimits(t *testing.T) {
	opts := fastOpts()
	opts.MaxSharedKeys = 10
	opts.MaxApps = 2
	opts.MaxNodes = 3
	opts.TrustReportedAddr = true // the node limit is reached with made-up addresses
	s := startServer(t, "", opts)
	addr := s.Addr().String()
	a := startNode(t, addr, ClientConfig{Interval: fastInterval})
	for i := range 11 {
		a.c.SetSharedData(fmt.Sprintf("k%d", i), 1)
	}
	waitFor(t, 2*time.Second, "key limit surfaced", func() bool {
		var re *RemoteError
		return errors.As(a.c.LastError(), &re) && re.Code == CodeLimit
	})
	if n := len(a.c.View().AllSharedData()); n != 10 {
		t.Fatalf("%d keys, want 10", n)
	}
	// Nodes per app.
	for i := range 2 {
		n := startNode(t, addr, ClientConfig{Interval: fastInterval, Addr: fmt.Sprintf("10.1.0.%d:1", i)})
		waitFor(t, 2*time.Second, "node listed", func() bool { return hasNode(n.c.View(), n.c.Addr(), nil) })
	}
	extra := startNode(t, addr, ClientConfig{Interval: fastInterval, Addr: "10.1.0.9:1"})
	waitFor(t, 2*time.Second, "node limit surfaced", func() bool {
		var re *RemoteError
		return errors.As(extra.c.LastError(), &re) && re.Code == CodeLimit
	})
	// Apps.
	second := startNode(t, addr, ClientConfig{Interval: fastInterval, App: "second"})
	<-second.c.Ready()
	third := startNode(t, addr, ClientConfig{Interval: fastInterval, App: "third"})
	waitFor(t, 2*time.Second, "app limit surfaced", func() bool {
		var re *RemoteError
		return errors.As(third.c.LastError(), &re) && re.Code == CodeLimit
	})
	// The node within limits is unaffected.
	a.c.RemoveSharedData("k0")
	waitFor(t, 2*time.Second, "still served", func() bool { _, ok := a.c.View().SharedData("k0"); return !ok })
}

func TestManySharedKeys(t *testing.T) {
	// 25,000 keys: the writer's changes span several reports, and the
	// snapshot a new node receives spans several sync parts.
	const n = 25_000
	s := startServer(t, "", fastOpts())
	addr := s.Addr().String()
	w := startNode(t, addr, ClientConfig{Interval: fastInterval})
	for i := range n {
		if err := w.c.SetSharedData(fmt.Sprintf("shared-key-%06d", i), int16(i%30000)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "writer sees every key", func() bool { return len(w.c.View().AllSharedData()) == n })
	late := startNode(t, addr, ClientConfig{Interval: fastInterval})
	waitFor(t, 20*time.Second, "new node gets every key", func() bool { return len(late.c.View().AllSharedData()) == n })
	if v, _ := late.c.View().SharedData("shared-key-024999"); v != 24999 {
		t.Fatalf("value %d", v)
	}
}
