package mesh

import (
	"context"
	"errors"
	"testing"
)

type joinReq struct {
	Player string `msgpack:"p"`
	Level  int    `msgpack:"l"`
}

type joinResp struct {
	Room  string   `msgpack:"r"`
	Peers []string `msgpack:"peers"`
}

// TestTypedRPC: a typed RPC round trip, a handler error, and a request
// the handler cannot decode, which reaches the caller as a request error.
func TestTypedRPC(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	join := NewRPC[joinReq, joinResp](40)
	join.Handle(b, func(ctx context.Context, req joinReq) (joinResp, error) {
		if req.Level < 0 {
			return joinResp{}, errors.New("bad level")
		}
		return joinResp{Room: req.Player + "-room", Peers: []string{"x", "y"}}, nil
	})
	resp, err := join.Call(context.Background(), a, b.GetMyEndPoint(), joinReq{Player: "ann", Level: 3})
	if err != nil || resp.Room != "ann-room" || len(resp.Peers) != 2 {
		t.Fatalf("Call: %+v %v", resp, err)
	}
	_, err = join.Call(context.Background(), a, b.GetMyEndPoint(), joinReq{Level: -1})
	var re *RemoteError
	if !IsRequestError(err) || !errors.As(err, &re) || re.Message != "bad level" {
		t.Fatalf("handler error: %v", err)
	}
	// The same ID called with another request type: it does not decode.
	wrong := NewRPC[[]int, joinResp](40)
	if _, err := wrong.Call(context.Background(), a, b.GetMyEndPoint(), []int{1, 2}); !IsRequestError(err) {
		t.Fatalf("undecodable request: %v, want a request error", err)
	}
	// A response this side cannot decode.
	asInt := NewRPC[joinReq, int](40)
	if _, err := asInt.Call(context.Background(), a, b.GetMyEndPoint(), joinReq{Player: "z"}); !IsRequestError(err) {
		t.Fatalf("undecodable response: %v, want a request error", err)
	}
}
