package mesh

import (
	"context"
	"errors"
	"fmt"
)

// Routing to a key's owner: the call goes to Owner(nodeType, key); when
// the owner answers ErrDraining (it is leaving and did not run the call)
// it goes to the next owner, within the caller's deadline.

// ErrNoOwner: no node of the type is online in this node's view (or every
// one refused the call because it drains), so no node owns the key. An
// error wrapping it is a send error (IsSendError).
var ErrNoOwner = errors.New("mesh: no online node of the type")

func noOwnerErr(nodeType, key string, refused []string) error {
	if len(refused) > 0 {
		return fmt.Errorf("%w: %w: type %q, key %q (%d refused: draining)", ErrSend, ErrNoOwner, nodeType, key, len(refused))
	}
	return fmt.Errorf("%w: %w: type %q, key %q", ErrSend, ErrNoOwner, nodeType, key)
}

// SendRPCToOwner sends an RPC to the owner of key among the online nodes
// of nodeType (see Owner; the options must be those the type is owned
// with) and returns its response. If the owner refuses with ErrDraining,
// the call goes to the next owner, and so on, within ctx's deadline
// (DefaultRPCTimeout for all the tries when ctx has none): a draining
// node runs nothing it refuses, so no call runs twice. Other errors are
// SendRPCWithContext's, returned as they come, since the call may have
// run: a send error when the owner died (the view names the next owner
// once the transport or MARS has marked it, within retryTimeout), and a
// send error wrapping ErrNoOwner when no node of the type is online.
func (n *Node) SendRPCToOwner(ctx context.Context, nodeType, key string, cmd uint16, data []byte, opts ...OwnerOption) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRPCTimeout)
		defer cancel()
	}
	resp, _, err := n.rpcToOwner(ctx, nodeType, key, cmd, data, ownerOpts(opts))
	return resp, err
}

// rpcToOwner is SendRPCToOwner; it also returns the node that answered.
func (n *Node) rpcToOwner(ctx context.Context, nodeType, key string, cmd uint16, data []byte, weight string) ([]byte, string, error) {
	if !n.IsPartOfCluster() {
		return nil, "", fmt.Errorf("%w: RPC %d to the owner of %q refused", ErrUnhealthy, cmd, key)
	}
	sk, k := ownerSetKey{nodeType, weight}, keyHash(key)
	var refused []string // owners that answered ErrDraining
	for {
		n.own.lookups.add(k)
		addr, ok := n.ownerSet(sk).owner(k, refused)
		if !ok {
			return nil, "", noOwnerErr(nodeType, key, refused)
		}
		resp, err := n.SendRPCWithContext(ctx, cmd, addr, data)
		if !IsDraining(err) {
			return resp, addr, err
		}
		refused = append(refused, addr)
		n.own.retries.Add(1)
	}
}

// SendRPCToOwner sends an RPC from the default node to the owner of key
// (see Node.SendRPCToOwner).
func SendRPCToOwner(ctx context.Context, nodeType, key string, cmd uint16, data []byte, opts ...OwnerOption) ([]byte, error) {
	if n := Default(); n != nil {
		return n.SendRPCToOwner(ctx, nodeType, key, cmd, data, opts...)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup)
}

// OpenStreamToOwner opens a stream (see OpenStream) to the owner of key
// among the online nodes of nodeType. It returns a send error wrapping
// ErrNoOwner when no node of the type is online. It is not sent again: an
// owner that drains refuses the stream, and its Recv returns ErrDraining;
// open it again then, and it goes to the next owner (this node's view
// lists the refusing node draining once its notice is in).
func (n *Node) OpenStreamToOwner(ctx context.Context, nodeType, key string, cmd uint16, first []byte, opts ...OwnerOption) (*Stream, error) {
	if !n.IsPartOfCluster() {
		return nil, fmt.Errorf("%w: stream %d to the owner of %q refused", ErrUnhealthy, cmd, key)
	}
	addr, ok := n.Owner(nodeType, key, opts...)
	if !ok {
		return nil, noOwnerErr(nodeType, key, nil)
	}
	return n.OpenStream(ctx, cmd, addr, first)
}

// OpenStreamToOwner opens a stream from the default node to the owner of
// key (see Node.OpenStreamToOwner).
func OpenStreamToOwner(ctx context.Context, nodeType, key string, cmd uint16, first []byte, opts ...OwnerOption) (*Stream, error) {
	if n := Default(); n != nil {
		return n.OpenStreamToOwner(ctx, nodeType, key, cmd, first, opts...)
	}
	return nil, errNotSetupSend
}

// CallOwner is Call to the owner of key among the online nodes of
// nodeType, from node (the default node if nil), with SendRPCToOwner's
// rules: sent again to the next owner when the owner drains, within ctx's
// deadline (DefaultRPCTimeout when it has none).
func (r RPC[Req, Resp]) CallOwner(ctx context.Context, node *Node, nodeType, key string, req Req, opts ...OwnerOption) (Resp, error) {
	return r.call(ctx, "the owner of "+key, req, func(ctx context.Context, data []byte) ([]byte, string, error) {
		if node == nil {
			if node = Default(); node == nil {
				return nil, "", fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup)
			}
		}
		return node.rpcToOwner(ctx, nodeType, key, r.cmd, data, ownerOpts(opts))
	})
}
