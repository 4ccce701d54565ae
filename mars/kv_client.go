package mars

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// The node's side of the key-value store (see kv_server.go for MARS's).
//
// A call sends one KindKV request to the MARS in use and waits for its
// KindKVReply, sending it again after kvResend without an answer, and at
// once when the client moves to another MARS address: the answer comes
// from wherever the request lands. Writes carry a sequence number and are
// applied once however often they are sent. No call runs on the client's
// loop or the transport's read goroutine: replies are matched to calls
// there and handed over without waiting.

const (
	// kvResend is how long a call waits for an answer before it sends the
	// request again.
	kvResend = time.Second
	// kvCheckEvery is how often a waiting call looks whether the client
	// moved to another MARS address.
	kvCheckEvery = 100 * time.Millisecond
	// kvStoreRetry is how long a write whose store call failed at MARS
	// waits before it is sent again.
	kvStoreRetry = 200 * time.Millisecond
	// kvWindow bounds the writes in flight per client.
	kvWindow = 256
	// kvPollHold is how long MARS may hold a watch poll.
	kvPollHold = 2 * time.Second
	// kvLocalUnsupported is a reply code made up by the client: the MARS
	// the request went to does not know KindKV.
	kvLocalUnsupported = 1 << 16
)

// KVEntry is one key: its value and the revision of its last put.
type KVEntry struct {
	Key   string
	Value []byte
	Rev   int64
}

// PutOptions are the options of a put.
type PutOptions struct {
	// TTL removes the key this long after the put (0: never). At least
	// MinKVTTL; with replicas over etcd it is rounded up to whole seconds.
	TTL time.Duration
	// CAS makes the put apply only if the key's revision is Rev (0: the
	// key does not exist); otherwise it fails with ErrConflict.
	CAS bool
	Rev int64
}

// DeleteOptions are the options of a delete.
type DeleteOptions struct {
	// CAS makes the delete apply only if the key's revision is Rev.
	CAS bool
	Rev int64
}

// kvClient is the key-value part of a Client.
type kvClient struct {
	mu      sync.Mutex
	closed  bool
	nextID  uint64
	seq     uint64
	calls   map[uint64]*kvCall
	writes  map[uint64]bool // write numbers in flight
	window  chan struct{}
	kvid    uint64 // the KV history last heard of
	rev     int64  // the highest revision of it heard of
	support map[netip.AddrPort]bool
	leases  map[string]*Lease
	wg      sync.WaitGroup // watches and lease renewals
	done    chan struct{}
}

type kvCall struct {
	done chan *kvReply
	to   netip.AddrPort
}

func (c *Client) kvInit() {
	c.kv = kvClient{calls: make(map[uint64]*kvCall), writes: make(map[uint64]bool),
		window: make(chan struct{}, kvWindow), support: make(map[netip.AddrPort]bool),
		leases: make(map[string]*Lease), done: make(chan struct{})}
}

// kvNoteSync records whether the MARS at from serves the key-value store
// (its syncs carry syncKV); loop goroutine.
func (c *Client) kvNoteSync(from netip.AddrPort, p []byte) {
	h, _, _, err := decodeSyncHead(p)
	if err != nil {
		return
	}
	c.kv.mu.Lock()
	c.kv.support[from] = h.Flags&syncKV != 0
	c.kv.mu.Unlock()
}

// kvNoteError takes MARS's refusal of KindKV as "not supported": a MARS
// of an earlier revision answers it with "unknown message kind". It
// reports whether the error was that.
func (c *Client) kvNoteError(from netip.AddrPort, p []byte) bool {
	e, err := decodeError(p)
	if err != nil || e.Addr != "" || !strings.HasPrefix(e.Message, fmt.Sprintf("unknown message kind 0x%02x", KindKV)) {
		return false
	}
	c.kv.mu.Lock()
	defer c.kv.mu.Unlock()
	c.kv.support[from] = false
	for _, call := range c.kv.calls {
		if call.to == from {
			select {
			case call.done <- &kvReply{Code: kvLocalUnsupported}:
			default:
			}
		}
	}
	return true
}

// kvHandleReply hands a reply to its call (transport read goroutine;
// never waits).
func (c *Client) kvHandleReply(p []byte) {
	rep, err := decodeKVReply(p)
	if err != nil {
		c.warn.Warn("mars: malformed kv reply from MARS", "err", err)
		return
	}
	c.kv.mu.Lock()
	call := c.kv.calls[rep.ID]
	if rep.KVID != 0 {
		if rep.KVID != c.kv.kvid {
			c.kv.kvid, c.kv.rev = rep.KVID, 0
		}
		if rep.Code == kvOK || rep.Code == kvNotFound {
			c.kv.rev = max(c.kv.rev, rep.Rev)
		}
	}
	c.kv.mu.Unlock()
	if call == nil {
		return // answered already (a resend's second answer)
	}
	select {
	case call.done <- rep:
	default:
	}
}

// kvClose fails every call and stops watches and renewals; with release
// it tells MARS the leases are free (best effort, nothing waits).
func (c *Client) kvClose(release bool) {
	c.kv.mu.Lock()
	if c.kv.closed {
		c.kv.mu.Unlock()
		return
	}
	c.kv.closed = true
	close(c.kv.done)
	leases := make([]*Lease, 0, len(c.kv.leases))
	for _, l := range c.kv.leases {
		leases = append(leases, l)
	}
	c.kv.mu.Unlock()
	for _, l := range leases {
		l.lose(ErrClosed)
		if release {
			c.kvSendOnce(&kvReq{Op: kvRelease, Key: l.key, Rev: l.token})
		}
	}
	c.kv.wg.Wait()
}

// kvSendOnce sends a request without waiting for an answer.
func (c *Client) kvSendOnce(req *kvReq) {
	to := c.mars.Load()
	if to == nil {
		return
	}
	req.App, req.Addr, req.Inc = c.App(), c.addr, c.inc
	c.send(*to, KindKV, req.append(nil))
}

// kvCall sends req and waits for the answer; writes get a sequence number.
// Writes and releases are sent again when MARS answers with a store
// failure, until ctx ends. A reply that is not OK comes back as an error
// (with the reply).
func (c *Client) kvCall(ctx context.Context, req *kvReq, write bool) (*kvReply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.KVTimeout)
		defer cancel()
	}
	if write {
		select {
		case c.kv.window <- struct{}{}:
			defer func() { <-c.kv.window }()
		case <-ctx.Done():
			return nil, c.kvCtxErr(ctx)
		case <-c.kv.done:
			return nil, ErrClosed
		}
	}
	req.App, req.Addr, req.Inc = c.App(), c.addr, c.inc
	call := &kvCall{done: make(chan *kvReply, 1)}
	c.kv.mu.Lock()
	if c.kv.closed {
		c.kv.mu.Unlock()
		return nil, ErrClosed
	}
	c.kv.nextID++
	req.ID = c.kv.nextID
	if write {
		c.kv.seq++
		req.Seq = c.kv.seq
		c.kv.writes[req.Seq] = true
		req.Base = req.Seq - 1
		for s := range c.kv.writes {
			req.Base = min(req.Base, s-1)
		}
	}
	c.kv.calls[req.ID] = call
	c.kv.mu.Unlock()
	defer func() {
		c.kv.mu.Lock()
		delete(c.kv.calls, req.ID)
		if write {
			delete(c.kv.writes, req.Seq)
		}
		c.kv.mu.Unlock()
	}()
	p := req.append(nil)
	resend := kvResend
	if req.Op == kvWatch {
		resend += time.Duration(req.TTL) * time.Millisecond
	}
	tick := time.NewTicker(kvCheckEvery)
	defer tick.Stop()
	var sentAt time.Time
	var to netip.AddrPort
	var failed *kvReply // the last store failure MARS answered a write with
	first := time.Now()
	for {
		cur := c.mars.Load()
		if cur != nil && (*cur != to || time.Since(sentAt) >= resend) {
			if write && time.Since(first) > kvResultKeep {
				// MARS keeps a write's result for a while only: past it, a
				// resend could apply the write again.
				return nil, fmt.Errorf("%w: no answer from MARS for %v; the write may or may not have applied", ErrTimeout, kvResultKeep)
			}
			c.kv.mu.Lock()
			ok, known := c.kv.support[*cur]
			call.to = *cur
			c.kv.mu.Unlock()
			if known && !ok {
				return nil, ErrKVUnsupported
			}
			to, sentAt = *cur, time.Now()
			c.send(to, KindKV, p)
		}
		select {
		case rep := <-call.done:
			switch {
			case rep.Code == kvLocalUnsupported:
				return nil, ErrKVUnsupported
			case (write || req.Op == kvRelease) && rep.Code == kvUnavailable && strings.HasPrefix(rep.Msg, storeFailed):
				// The write may or may not have applied; its result record
				// tells MARS which when it comes again, so a store that
				// stalled (etcd slow, a failover) costs time, not the write.
				// A release needs no record: MARS deletes the lease only
				// while it names this holder and token, so a second one
				// after an applied first is a no-op.
				failed = rep
				sentAt = time.Now().Add(kvStoreRetry - resend) // so it goes again kvStoreRetry from now
			case rep.Code != kvOK:
				return rep, kvErrorOf(rep)
			default:
				return rep, nil
			}
		case <-tick.C:
		case <-ctx.Done():
			if failed != nil {
				return failed, kvErrorOf(failed)
			}
			return nil, c.kvCtxErr(ctx)
		case <-c.kv.done:
			return nil, ErrClosed
		}
	}
}

func (c *Client) kvCtxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer from MARS: %w", ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}

// kvRead fills in the revision a read must include (the node's own
// writes and what it has read: a replica that is behind waits for it).
func (c *Client) kvRead(req *kvReq) {
	c.kv.mu.Lock()
	req.KVID, req.Rev = c.kv.kvid, c.kv.rev
	c.kv.mu.Unlock()
}

// Put sets key to value (at most MaxKVValueLen bytes) and returns the
// key's new revision. With opts.CAS it applies only if the key is at
// opts.Rev (0: absent), else it fails with ErrConflict (the KVError holds
// the key's revision). The put is applied exactly once, also when MARS
// fails over or restarts meanwhile or its store call fails (it is sent
// again until ctx ends); once it returns, every Get sees it.
// Without a deadline in ctx, ClientConfig.KVTimeout bounds it.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts PutOptions) (int64, error) {
	if err := CheckKVKey(key); err != nil {
		return 0, err
	}
	if len(value) > MaxKVValueLen {
		return 0, fmt.Errorf("%w: value of %d bytes, limit %d", ErrLimit, len(value), MaxKVValueLen)
	}
	if opts.TTL < 0 || opts.TTL > 0 && opts.TTL < MinKVTTL {
		return 0, fmt.Errorf("mars: put TTL %v: want 0 or at least %v", opts.TTL, MinKVTTL)
	}
	if value == nil {
		value = []byte{}
	}
	return c.kvWrite(ctx, &kvReq{Op: kvPut, Key: key, Value: value, TTL: uint64(opts.TTL.Milliseconds())}, opts.CAS, opts.Rev)
}

// kvWrite sends a put or delete (with CAS, only at revision rev) and
// returns the revision of the change.
func (c *Client) kvWrite(ctx context.Context, req *kvReq, cas bool, rev int64) (int64, error) {
	if cas {
		req.Flags, req.Rev = kvFlagCAS, rev
	}
	rep, err := c.kvCall(ctx, req, true)
	if err != nil {
		return 0, err
	}
	return rep.Rev, nil
}

// Get returns a key, or an error wrapping ErrNotFound. It reads what MARS
// holds: the node's own writes at once, every node's once acknowledged.
func (c *Client) Get(ctx context.Context, key string) (KVEntry, error) {
	if err := CheckKVKey(key); err != nil {
		return KVEntry{}, err
	}
	req := &kvReq{Op: kvGet, Key: key}
	c.kvRead(req)
	rep, err := c.kvCall(ctx, req, false)
	if err != nil {
		return KVEntry{}, err
	}
	if len(rep.Entries) != 1 {
		return KVEntry{}, fmt.Errorf("%w: get answered with %d entries", ErrProtocol, len(rep.Entries))
	}
	e := rep.Entries[0]
	return KVEntry{Key: e.Key, Value: e.Value, Rev: e.Rev}, nil
}

// Delete removes a key and returns the revision of the removal; an
// absent key fails with ErrNotFound. With opts.CAS it applies only if the
// key is at opts.Rev (else ErrConflict). Exactly once, as Put.
func (c *Client) Delete(ctx context.Context, key string, opts DeleteOptions) (int64, error) {
	if err := CheckKVKey(key); err != nil {
		return 0, err
	}
	return c.kvWrite(ctx, &kvReq{Op: kvDel, Key: key}, opts.CAS, opts.Rev)
}

// List returns the keys under prefix ("" for all), sorted, and the
// revision the list is complete up to (WatchFrom that revision misses
// nothing). MARS answers in pages of about 512 KiB; each page is
// consistent, a list of several pages is not one snapshot.
func (c *Client) List(ctx context.Context, prefix string) ([]KVEntry, int64, error) {
	return c.list(ctx, prefix, false)
}

// ListKeys is List without the values.
func (c *Client) ListKeys(ctx context.Context, prefix string) ([]KVEntry, int64, error) {
	return c.list(ctx, prefix, true)
}

func (c *Client) list(ctx context.Context, prefix string, keysOnly bool) ([]KVEntry, int64, error) {
	if err := checkKVPrefix(prefix); err != nil {
		return nil, 0, err
	}
	var out []KVEntry
	flags := uint64(0)
	if keysOnly {
		flags = kvFlagKeysOnly
	}
	rev, err := c.kvPages(ctx, kvList, prefix, flags, func(e kvEntry) {
		out = append(out, KVEntry{Key: e.Key, Value: e.Value, Rev: e.Rev})
	})
	return out, rev, err
}

// kvPages reads a list (op kvList or kvLeases) page by page, calling each
// for every entry; it returns the revision of the first page.
func (c *Client) kvPages(ctx context.Context, op uint64, prefix string, flags uint64, each func(kvEntry)) (int64, error) {
	var rev int64
	after := ""
	for page := 0; ; page++ {
		req := &kvReq{Op: op, Key: prefix, After: after, Flags: flags}
		c.kvRead(req)
		rep, err := c.kvCall(ctx, req, false)
		if err != nil {
			return 0, err
		}
		if page == 0 {
			rev = rep.Rev
		}
		for _, e := range rep.Entries {
			each(e)
		}
		if !rep.More || len(rep.Entries) == 0 {
			return rev, nil
		}
		after = rep.Entries[len(rep.Entries)-1].Key
	}
}
