package mesh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/marsmesh/marsmesh/mars"
)

// The cluster key-value store held by MARS (see package mars for the
// protocol, its guarantees and limits): mesh.KV() or node.KV() gives a
// handle; its calls go to the MARS the node syncs with.
//
// Keys are strings of 1 to mars.MaxKVKeyLen bytes (UTF-8, no control
// characters), values up to mars.MaxKVValueLen bytes, per app (the node's
// namespace). Every write applies exactly once, also when MARS fails over
// or restarts meanwhile; once a write returns, every Get on any node sees
// it. Errors wrap one of the sentinels below (ErrKVNotFound, ErrKVConflict,
// ...), ErrRequestTimeout when MARS did not answer before the deadline
// (without one in ctx: 10 s), or ErrClosed.

// Types of the key-value store (defined in package mars).
type (
	KVEntry       = mars.KVEntry
	KVEvent       = mars.KVEvent
	KVEventType   = mars.KVEventType
	PutOptions    = mars.PutOptions
	DeleteOptions = mars.DeleteOptions
	KVError       = mars.KVError
)

// Watch event types.
const (
	KVPut     = mars.KVPut
	KVDelete  = mars.KVDelete
	KVExpired = mars.KVExpired
	KVResync  = mars.KVResync
)

// Errors of the key-value store and leases (errors.Is works on them; a
// refusal by MARS is a *KVError with the details).
var (
	ErrKVNotFound    = mars.ErrNotFound      // no such key
	ErrKVConflict    = mars.ErrConflict      // compare-and-swap found another revision
	ErrKVBadKey      = mars.ErrBadKVKey      // key or lease name refused
	ErrKVLimit       = mars.ErrLimit         // value too large, or an app's keys, bytes or leases at their limit
	ErrKVUnsupported = mars.ErrKVUnsupported // the MARS in use predates the key-value store
	ErrKVUnavailable = mars.ErrUnavailable   // MARS cannot serve it now (store unreachable until the deadline, claims held after a restart): retry
	ErrLeaseHeld     = mars.ErrLeaseHeld     // another node (or this one) holds the lease
	ErrLeaseLost     = mars.ErrLeaseLost     // the lease is no longer held
	ErrNotLive       = mars.ErrNotLive       // only nodes listed online may claim
)

// IsKVNotFound reports whether err says the key does not exist.
func IsKVNotFound(err error) bool { return errors.Is(err, ErrKVNotFound) }

// IsKVConflict reports whether err is a failed compare-and-swap.
func IsKVConflict(err error) bool { return errors.Is(err, ErrKVConflict) }

// IsLeaseHeld reports whether a claim failed because the lease is held.
func IsLeaseHeld(err error) bool { return errors.Is(err, ErrLeaseHeld) }

// IsLeaseLost reports whether err says a lease was lost.
func IsLeaseLost(err error) bool { return errors.Is(err, ErrLeaseLost) }

// KVStore is a handle on the cluster key-value store of a node.
type KVStore struct{ n *Node }

// KV returns the node's key-value store.
func (n *Node) KV() *KVStore { return &KVStore{n: n} }

// KV returns the default node's key-value store; before Setup its calls
// fail with ErrNotSetup.
func KV() *KVStore { return &KVStore{n: Default()} }

func (k *KVStore) client() (*mars.Client, error) {
	if k.n == nil || k.n.node == nil {
		return nil, ErrNotSetup
	}
	if k.n.life.closed.Load() {
		return nil, ErrClosed
	}
	return k.n.mc, nil
}

// kvErr classifies an error of the mars client for the mesh.
func kvErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mars.ErrTimeout):
		return fmt.Errorf("%w: %w", ErrRequestTimeout, err)
	case errors.Is(err, mars.ErrClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Put sets key to value and returns the key's new revision. With
// opts.CAS it applies only if the key is at opts.Rev (0: absent), else it
// fails with ErrKVConflict; opts.TTL removes the key after that long.
func (k *KVStore) Put(ctx context.Context, key string, value []byte, opts PutOptions) (int64, error) {
	c, err := k.client()
	if err != nil {
		return 0, err
	}
	rev, err := c.Put(ctx, key, value, opts)
	return rev, kvErr(err)
}

// Get returns a key, or an error wrapping ErrKVNotFound.
func (k *KVStore) Get(ctx context.Context, key string) (KVEntry, error) {
	c, err := k.client()
	if err != nil {
		return KVEntry{}, err
	}
	e, err := c.Get(ctx, key)
	return e, kvErr(err)
}

// Delete removes a key (ErrKVNotFound if absent) and returns the revision
// of the removal; with opts.CAS only if the key is at opts.Rev.
func (k *KVStore) Delete(ctx context.Context, key string, opts DeleteOptions) (int64, error) {
	c, err := k.client()
	if err != nil {
		return 0, err
	}
	rev, err := c.Delete(ctx, key, opts)
	return rev, kvErr(err)
}

// List returns the keys under prefix, sorted, and the revision to watch
// from (WatchFrom) to miss no later change.
func (k *KVStore) List(ctx context.Context, prefix string) ([]KVEntry, int64, error) {
	c, err := k.client()
	if err != nil {
		return nil, 0, err
	}
	out, rev, err := c.List(ctx, prefix)
	return out, rev, kvErr(err)
}

// Watch delivers every change under prefix from now on, in revision
// order, each once, across MARS failovers and restarts (a KVResync event
// when the history is gone). The channel closes when ctx ends or the node
// shuts down.
func (k *KVStore) Watch(ctx context.Context, prefix string) (<-chan KVEvent, error) {
	return k.WatchFrom(ctx, prefix, 0)
}

// WatchFrom is Watch from the changes after revision rev (of List, Put or
// an event).
func (k *KVStore) WatchFrom(ctx context.Context, prefix string, rev int64) (<-chan KVEvent, error) {
	c, err := k.client()
	if err != nil {
		return nil, err
	}
	ch, err := c.WatchFrom(ctx, prefix, rev)
	return ch, kvErr(err)
}

// kvReleaseWait bounds how long Shutdown waits for MARS to confirm that
// the node's leases are released.
const kvReleaseWait = time.Second
