package mesh

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// RPC is a typed RPC: a command ID with its request and response types,
// defined once and used on both sides. Values travel msgpack-encoded
// (struct fields by their `msgpack` tags, else by name). It is a layer over
// HandleRPCWithContext and SendRPCWithContext, so it shares their table,
// deadlines and errors.
//
//	var Join = mesh.NewRPC[JoinReq, JoinResp](cmdJoin)
//	Join.Handle(node, func(ctx context.Context, req JoinReq) (JoinResp, error) { ... })
//	resp, err := Join.Call(ctx, node, addr, JoinReq{...})
type RPC[Req, Resp any] struct {
	cmd uint16
}

// NewRPC defines the typed RPC of command ID cmd.
func NewRPC[Req, Resp any](cmd uint16) RPC[Req, Resp] { return RPC[Req, Resp]{cmd: cmd} }

// Command returns the RPC's command ID.
func (r RPC[Req, Resp]) Command() uint16 { return r.cmd }

// Handle adds h as a handler of the RPC on node, or on the default node
// (before or after Setup) if node is nil. A request that does not decode
// into Req is answered with an error without calling h.
func (r RPC[Req, Resp]) Handle(node *Node, h func(ctx context.Context, req Req) (Resp, error)) {
	f := func(ctx context.Context, data []byte, _ string) ([]byte, error) {
		var req Req
		if err := msgpack.Unmarshal(data, &req); err != nil {
			return nil, fmt.Errorf("decode %T: %w", req, err)
		}
		resp, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		b, err := msgpack.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("encode %T: %w", resp, err)
		}
		return b, nil
	}
	if node == nil {
		HandleRPCWithContext(r.cmd, f)
		return
	}
	node.HandleRPCWithContext(r.cmd, f)
}

// Call sends req to the RPC's handler on the node at addr, from node (the
// default node if nil), and returns the decoded response. Errors are
// classified as SendRPCWithContext's; a request the handler could not
// decode, and a response this side cannot decode, are request errors.
func (r RPC[Req, Resp]) Call(ctx context.Context, node *Node, addr string, req Req) (Resp, error) {
	return r.call(ctx, addr, req, func(ctx context.Context, data []byte) ([]byte, string, error) {
		var b []byte
		var err error
		if node == nil {
			b, err = SendRPCWithContext(ctx, r.cmd, addr, data)
		} else {
			b, err = node.SendRPCWithContext(ctx, r.cmd, addr, data)
		}
		return b, addr, err
	})
}

// call encodes req, gives ctx DefaultRPCTimeout when it has no deadline,
// sends the request with send (which returns the address that answered)
// and decodes the response; to names the destination in errors.
func (r RPC[Req, Resp]) call(ctx context.Context, to string, req Req, send func(context.Context, []byte) ([]byte, string, error)) (Resp, error) {
	var zero Resp
	data, err := msgpack.Marshal(req)
	if err != nil {
		return zero, sendErr(to, fmt.Errorf("%w: encode %T: %w", ErrInvalidData, req, err))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRPCTimeout)
		defer cancel()
	}
	b, addr, err := send(ctx, data)
	if err != nil {
		return zero, err
	}
	var resp Resp
	if err := msgpack.Unmarshal(b, &resp); err != nil {
		return zero, fmt.Errorf("%w: command %d on %s: decode %T: %w", ErrRequest, r.cmd, addr, resp, err)
	}
	return resp, nil
}
