package mesh

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSeveralHandlers: three command handlers of one ID all run, in
// registration order (a failing or panicking one does not stop the rest);
// three RPC handlers answer from the first that returns a response or an
// error, and the ones after it do not run.
func TestSeveralHandlers(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	ran := make(chan string, 16)
	b.HandleCommand(1, func(m map[string]interface{}) ([]byte, error) {
		ran <- "one:" + GetString(m, "k")
		m["k"] = "changed" // each handler decodes a map of its own
		return nil, errors.New("fails")
	})
	b.SetCommandHandler(1, func(p []byte, _ string) ([]byte, error) { ran <- "two"; panic("panics") })
	b.HandleCommand(1, func(m map[string]interface{}) ([]byte, error) { ran <- "three:" + GetString(m, "k"); return nil, nil })
	if err := a.Send(1, b.GetMyEndPoint(), map[string]interface{}{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one:v", "two", "three:v"} {
		select {
		case h := <-ran:
			if h != want {
				t.Fatalf("handler %q ran, want %q", h, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("handler %q did not run", want)
		}
	}

	b.HandleRPC(2, func(d []byte, _ string) ([]byte, error) { ran <- "rpc1"; return nil, nil })
	b.HandleRPCWithContext(2, func(ctx context.Context, d []byte, _ string) ([]byte, error) {
		ran <- "rpc2"
		if ctx == nil {
			return nil, errors.New("no context")
		}
		if string(d) == "fail" {
			return nil, errors.New("second says no")
		}
		return []byte("second"), nil
	})
	b.HandleRPC(2, func(d []byte, _ string) ([]byte, error) { ran <- "rpc3"; return []byte("third"), nil })
	if !b.IsCommandDuplicate(2) {
		t.Fatal("three RPC handlers not reported as duplicate")
	}
	resp, err := a.SendRPC(2, b.GetMyEndPoint(), []byte("x"))
	if err != nil || string(resp) != "second" {
		t.Fatalf("RPC: %q %v, want the second handler's answer", resp, err)
	}
	_, err = a.SendRPC(2, b.GetMyEndPoint(), []byte("fail"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "second says no" {
		t.Fatalf("RPC: %v, want the second handler's error", err)
	}
	for _, want := range []string{"rpc1", "rpc2", "rpc1", "rpc2"} {
		if h := <-ran; h != want {
			t.Fatalf("RPC handler %q ran, want %q", h, want)
		}
	}
	if len(ran) != 0 {
		t.Fatalf("RPC handler %q ran after one answered", <-ran)
	}

	// SendRequest reaches the command table with the RPC rule.
	b.HandleCommand(3, func(map[string]interface{}) ([]byte, error) { return nil, nil })
	b.HandleCommand(3, func(map[string]interface{}) ([]byte, error) {
		return CreateReturnBytes(map[string]interface{}{"from": "second"})
	})
	b.HandleCommand(3, func(map[string]interface{}) ([]byte, error) { return nil, errors.New("third must not run") })
	done := make(chan error, 1)
	a.SendRequest(3, b.GetMyEndPoint(), map[string]interface{}{}, func(err error, m map[string]interface{}) {
		if err == nil && GetString(m, "from") != "second" {
			err = errors.New("answer from " + GetString(m, "from"))
		}
		done <- err
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSendRequestCallbackGoroutine: the callback runs on a goroutine of
// its own also when SendRequest fails before sending, so a callback that
// waits for the caller cannot deadlock it.
func TestSendRequestCallbackGoroutine(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	type call struct {
		name string
		send func(cb func(error, map[string]interface{}))
		want error
	}
	calls := []call{
		{"invalid data", func(cb func(error, map[string]interface{})) { n.SendRequest(1, n.GetMyEndPoint(), "bad", cb) }, ErrInvalidData},
		{"before Setup", func(cb func(error, map[string]interface{})) {
			SendRequest(1, "127.0.0.1:1", map[string]interface{}{}, cb)
		}, ErrNotSetup},
	}
	for _, cl := range calls {
		proceed := make(chan struct{})
		result := make(chan error, 1)
		returned := make(chan struct{})
		go func() {
			cl.send(func(err error, _ map[string]interface{}) {
				<-proceed // a synchronous callback would block SendRequest here
				result <- err
			})
			close(returned)
		}()
		select {
		case <-returned:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: SendRequest waited for its callback", cl.name)
		}
		close(proceed)
		if err := <-result; !errors.Is(err, cl.want) {
			t.Fatalf("%s: callback got %v, want %v", cl.name, err, cl.want)
		}
	}
}

// TestIDTable: a table copied with a new ID leaves the original as it
// was, shares the pages it did not change, and finds IDs at both ends
// of a page.
func TestIDTable(t *testing.T) {
	var empty idTable[int]
	if _, ok := empty.get(7); ok {
		t.Fatal("an empty table has 7")
	}
	a := empty.with(0x1200, 1)
	b := a.with(0x12ff, 2)
	c := b.with(0xffff, 3)
	for _, tc := range []struct {
		tab  *idTable[int]
		id   uint16
		want int
		ok   bool
	}{
		{&a, 0x1200, 1, true}, {&a, 0x12ff, 0, false}, {&b, 0x1200, 1, true}, {&b, 0x12ff, 2, true},
		{&c, 0xffff, 3, true}, {&b, 0xffff, 0, false}, {&c, 0x1201, 0, false}, {&c, 0, 0, false},
	} {
		if v, ok := tc.tab.get(tc.id); v != tc.want || ok != tc.ok {
			t.Errorf("get(%#x) = %d, %v; want %d, %v", tc.id, v, ok, tc.want, tc.ok)
		}
	}
	if b.pages[0x12] == a.pages[0x12] || c.pages[0x12] != b.pages[0x12] {
		t.Error("a copy must copy the page it changes and share the others")
	}
}

// TestRegistryDispatch: what dispatch finds follows registrations, also
// for a dispatch table read before them.
func TestRegistryDispatch(t *testing.T) {
	r := newRegistry()
	before := r.disp.Load()
	r.addCmd(5, cmdHandler{raw: func([]byte, string) ([]byte, error) { return []byte("a"), nil }})
	r.addRPC(5, rpcHandler{plain: func([]byte, string) ([]byte, error) { return nil, nil }})
	if !r.addStream(9, func(context.Context, *Stream) error { return nil }) || r.addStream(9, nil) {
		t.Fatal("the first stream handler of an ID is taken, a second refused")
	}
	if _, ok := before.cmd.get(5); ok {
		t.Fatal("a stored dispatch table changed")
	}
	if h, ok := r.getCmd(5); !ok || h.raw == nil {
		t.Fatal("command 5 not found")
	}
	if _, ok := r.getRPC(5); !ok {
		t.Fatal("RPC 5 not found")
	}
	if h, ok := r.getStream(9); !ok || h == nil {
		t.Fatal("stream 9 not found, or the refused one replaced it")
	}
	if _, ok := r.getCmd(6); ok {
		t.Fatal("command 6 found")
	}
	r.addCmd(5, cmdHandler{raw: func([]byte, string) ([]byte, error) { return nil, nil }})
	if h, _ := r.getCmd(5); len(h.chain) != 2 || !r.isDup(5) {
		t.Fatal("two handlers of command 5 must chain")
	}
}
