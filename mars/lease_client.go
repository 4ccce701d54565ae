package mars

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Leases: a key granted to one node at a time.
//
// Timing. MARS (with replicas: etcd) starts a lease's TTL when it grants
// or renews it, which is after the node sent the request. The node counts
// its own deadline from the moment it first sent the request MARS
// confirmed, and stops at leaseMargin (90%) of the TTL: Lost fires at
// least a tenth of the TTL before MARS may grant the key to anyone else,
// as long as the node's clock does not run more than 10% slower than
// MARS's (etcd's) and the node's process runs. A process that is stopped
// (SIGSTOP, a long GC pause, a VM freeze) sees Lost late: fence the
// writes the lease protects with Token, which grows with every grant of
// the key, and let the store of those writes refuse a smaller token than
// it has seen.
//
// Renewal: every lease renews itself every TTL/3 in the background; a
// renewal that MARS does not confirm is sent again until the deadline.

const leaseMargin = 0.9

// Lease is a key this node holds. Its methods are safe for concurrent use.
type Lease struct {
	c     *Client
	key   string
	token int64
	ttl   time.Duration

	mu       sync.Mutex
	kvid     uint64
	deadline time.Time
	err      error // why it was lost; nil while held
	lost     chan struct{}
	stop     chan struct{} // ends the renewal goroutine
}

// Key is the lease's name.
func (l *Lease) Key() string { return l.key }

// Token grows with every grant of the key (it is the grant's revision):
// a fencing token for the writes the lease protects.
func (l *Lease) Token() int64 { return l.token }

// TTL is the lease's time to live at MARS.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Lost is closed when the lease is no longer held: not renewed before
// its deadline, refused by MARS, released, or the client closed. It fires
// before MARS can grant the key to another node (see the timing above).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err is nil while the lease is held, and says why it was lost after.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Valid reports whether the lease is held and its deadline not passed.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err == nil && time.Now().Before(l.deadline)
}

// Deadline is when the lease counts as lost unless a renewal is confirmed.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// lose marks the lease lost (once) and stops its renewals.
func (l *Lease) lose(why error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return false
	}
	l.err = why
	close(l.lost)
	close(l.stop)
	c := l.c
	c.kv.mu.Lock()
	if c.kv.leases[l.key] == l {
		delete(c.kv.leases, l.key)
	}
	c.kv.mu.Unlock()
	return true
}

// Release gives the lease up: Lost fires at once, and MARS frees the key
// for other nodes. A release MARS could not store (etcd away a moment) is
// sent again until ctx ends (without a deadline, ClientConfig.KVTimeout).
// A lease that was lost already is not an error.
func (l *Lease) Release(ctx context.Context) error {
	if !l.lose(fmt.Errorf("%w: released", ErrLeaseLost)) {
		return nil
	}
	_, err := l.c.kvCall(ctx, &kvReq{Op: kvRelease, Key: l.key, Rev: l.token}, false)
	return err
}

// Claim asks MARS for the lease on key for ttl (MinLeaseTTL to the
// server's MaxLeaseTTL). It fails with ErrLeaseHeld when another node
// holds it (KVError.Holder says which) or this node does already, and
// with ErrNotLive unless MARS lists this node online (guests, draining
// nodes and nodes not registered yet may not claim). The lease renews
// itself until Release, until it is lost, or until the client closes; a
// holder that dies leaves the key free after the TTL.
func (c *Client) Claim(ctx context.Context, key string, ttl time.Duration) (*Lease, error) {
	if err := CheckKVKey(key); err != nil {
		return nil, err
	}
	if ttl < MinLeaseTTL {
		return nil, fmt.Errorf("mars: lease TTL %v, at least %v", ttl, MinLeaseTTL)
	}
	if c.cfg.Guest {
		return nil, fmt.Errorf("%w: a guest may not claim", ErrNotLive)
	}
	if c.Life() == StateDraining {
		return nil, fmt.Errorf("%w: the node is draining", ErrNotLive)
	}
	c.kv.mu.Lock()
	if l := c.kv.leases[key]; l != nil {
		c.kv.mu.Unlock()
		return nil, &KVError{Code: kvHeld, Holder: c.addr, Rev: l.token, Message: fmt.Sprintf("lease %q is held by this node already", key)}
	}
	c.kv.mu.Unlock()
	wait := time.NewTimer(c.cfg.KVTimeout)
	defer wait.Stop()
	select { // MARS must list the node online first
	case <-c.ready:
	case <-ctx.Done():
		return nil, c.kvCtxErr(ctx)
	case <-wait.C:
		return nil, fmt.Errorf("%w: the node is not online yet", ErrNotLive)
	case <-c.kv.done:
		return nil, ErrClosed
	}
	sent := time.Now()
	rep, err := c.kvCall(ctx, &kvReq{Op: kvClaim, Key: key, TTL: uint64(ttl.Milliseconds())}, true)
	if err != nil {
		return nil, err
	}
	l := &Lease{c: c, key: key, token: rep.Rev, ttl: ttl, kvid: rep.KVID,
		deadline: sent.Add(time.Duration(float64(ttl) * leaseMargin)), lost: make(chan struct{}), stop: make(chan struct{})}
	c.kv.mu.Lock()
	if c.kv.closed || c.kv.leases[key] != nil {
		c.kv.mu.Unlock()
		c.kvSendOnce(&kvReq{Op: kvRelease, Key: key, Rev: l.token})
		return nil, fmt.Errorf("%w: the client closed, or another Claim of this node got the key", ErrLeaseLost)
	}
	c.kv.leases[key] = l
	c.kv.wg.Add(1)
	c.kv.mu.Unlock()
	go l.renew()
	if !time.Now().Before(l.Deadline()) {
		l.Release(context.Background())
		return nil, fmt.Errorf("%w: MARS granted %q after the lease's deadline had passed here", ErrLeaseLost, key)
	}
	return l, nil
}

// renew keeps the lease alive until it is lost.
func (l *Lease) renew() {
	c := l.c
	defer c.kv.wg.Done()
	every := l.ttl / 3
	next := time.NewTimer(every)
	defer next.Stop()
	dead := time.NewTimer(time.Until(l.Deadline()))
	defer dead.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-c.kv.done:
			return
		case <-dead.C:
			if !time.Now().Before(l.Deadline()) {
				l.lose(fmt.Errorf("%w: not renewed before its deadline", ErrLeaseLost))
				return
			}
			dead.Reset(time.Until(l.Deadline()))
		case <-next.C:
			sent := time.Now()
			l.mu.Lock()
			kvid, deadline := l.kvid, l.deadline
			l.mu.Unlock()
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			rep, err := c.kvCall(ctx, &kvReq{Op: kvRenew, Key: l.key, Rev: l.token, KVID: kvid, TTL: uint64(l.ttl.Milliseconds())}, false)
			cancel()
			switch {
			case err == nil:
				l.mu.Lock()
				if l.err == nil {
					l.kvid = rep.KVID
					l.deadline = sent.Add(time.Duration(float64(l.ttl) * leaseMargin))
				}
				l.mu.Unlock()
				dead.Reset(time.Until(l.Deadline()))
				next.Reset(every)
			case rep != nil && rep.Code == kvLeaseGone:
				l.lose(err)
				return
			default:
				next.Reset(min(every/4, 250*time.Millisecond)) // try again soon
			}
		}
	}
}

// Leases returns the leases this node holds.
func (c *Client) Leases() []*Lease {
	c.kv.mu.Lock()
	defer c.kv.mu.Unlock()
	out := make([]*Lease, 0, len(c.kv.leases))
	for _, l := range c.kv.leases {
		out = append(out, l)
	}
	return out
}

// ReleaseAll releases every lease this node holds (Lost fires on each at
// once) and waits until MARS confirmed, or ctx ends. A node that shuts
// down or drains calls it first, so other nodes can take its keys over
// without waiting for their TTLs.
func (c *Client) ReleaseAll(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 0)
	var mu sync.Mutex
	for _, l := range c.Leases() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Release(ctx); err != nil && !errors.Is(err, ErrClosed) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("lease %q: %w", l.key, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// LeaseInfo is a lease as MARS lists it.
type LeaseInfo struct {
	Key    string
	Holder string // the holder's mesh address
	Token  int64
}

// ListLeases returns the leases MARS holds under prefix ("" for all), by
// name: any node's, not only this one's.
func (c *Client) ListLeases(ctx context.Context, prefix string) ([]LeaseInfo, error) {
	if err := checkKVPrefix(prefix); err != nil {
		return nil, err
	}
	var out []LeaseInfo
	_, err := c.kvPages(ctx, kvLeases, prefix, 0, func(e kvEntry) {
		out = append(out, LeaseInfo{Key: e.Key, Holder: string(e.Value), Token: e.Rev})
	})
	return out, err
}
