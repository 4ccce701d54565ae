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
