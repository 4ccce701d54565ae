package mars

import (
	"context"
	"errors"
	"time"
)

// KVEventType says what a KVEvent is.
type KVEventType int

// Event types.
const (
	// KVPut: the key was set (Value, Rev).
	KVPut KVEventType = 1
	// KVDelete: the key was deleted (Rev is the deletion's).
	KVDelete KVEventType = 2
	// KVExpired: the key's TTL ran out (Rev is the removal's).
	KVExpired KVEventType = 3
	// KVResync: the history the watch needed is gone (MARS restarted
	// without a data file, a replica loaded the store again, or the watch
	// fell too far behind): Entries is every key under the prefix as of
	// Rev, and changes after Rev follow (some of which Entries may show
	// already). Replace what you built from earlier events.
	KVResync KVEventType = 4
)

func (t KVEventType) String() string {
	switch t {
	case KVPut:
		return "put"
	case KVDelete:
		return "delete"
	case KVExpired:
		return "expired"
	case KVResync:
		return "resync"
	}
	return "unknown"
}

// KVEvent is one change a watch delivers.
type KVEvent struct {
	Type    KVEventType
	Key     string
	Value   []byte
	Rev     int64
	Entries []KVEntry // KVResync only
}

// Watch delivers every change of the keys under prefix ("" for all) made
// after the call, in revision order, each once (see WatchFrom).
func (c *Client) Watch(ctx context.Context, prefix string) (<-chan KVEvent, error) {
	return c.WatchFrom(ctx, prefix, 0)
}

// WatchFrom delivers every change of the keys under prefix after revision
// rev (from List, Put or an event of this MARS; 0: from now), in revision
// order, each once. It resumes by itself after a lost answer, a MARS
// failover or restart, without a gap: when the history it needs is gone
// it delivers a KVResync event instead. The channel is closed when ctx
// ends, the client closes, or the MARS in use does not serve the
// key-value store. A reader that stops holds up only its watch (MARS
// keeps the history for a while; past it, the watch resyncs).
func (c *Client) WatchFrom(ctx context.Context, prefix string, rev int64) (<-chan KVEvent, error) {
	if err := checkKVPrefix(prefix); err != nil {
		return nil, err
	}
	c.kv.mu.Lock()
	if c.kv.closed {
		c.kv.mu.Unlock()
		return nil, ErrClosed
	}
	kvid := c.kv.kvid
	c.kv.wg.Add(1)
	c.kv.mu.Unlock()
	ch := make(chan KVEvent, 64)
	go func() {
		defer c.kv.wg.Done()
		defer close(ch)
		c.watch(ctx, prefix, rev, kvid, ch)
	}()
	return ch, nil
}

func (c *Client) watch(ctx context.Context, prefix string, from int64, kvid uint64, ch chan<- KVEvent) {
	put := func(e KVEvent) bool {
		select {
		case ch <- e:
			return true
		case <-ctx.Done():
		case <-c.kv.done:
		}
		return false
	}
	for ctx.Err() == nil {
		req := &kvReq{Op: kvWatch, Key: prefix, Rev: from, KVID: kvid, TTL: uint64(kvPollHold.Milliseconds())}
		pctx, cancel := context.WithTimeout(ctx, kvPollHold+c.cfg.KVTimeout)
		rep, err := c.kvCall(pctx, req, false)
		cancel()
		switch {
		case rep != nil && rep.Code == kvCompacted:
			entries, rev, err := c.list(ctx, prefix, false)
			if err != nil {
				continue // tried again with the next poll
			}
			c.kv.mu.Lock()
			kvid = c.kv.kvid
			c.kv.mu.Unlock()
			if !put(KVEvent{Type: KVResync, Rev: rev, Entries: entries}) {
				return
			}
			from = rev
		case errors.Is(err, ErrKVUnsupported), errors.Is(err, ErrClosed):
			return
		case err != nil:
			select { // MARS refused it (a limit) or did not answer: try again
			case <-time.After(c.cfg.Interval):
			case <-ctx.Done():
			case <-c.kv.done:
				return
			}
		case from == 0:
			from, kvid = rep.Rev, rep.KVID
		default:
			kvid = rep.KVID
			for _, e := range rep.Entries {
				if e.Rev <= from {
					continue
				}
				ev := KVEvent{Type: KVPut, Key: e.Key, Value: e.Value, Rev: e.Rev}
				switch {
				case e.Flags&kvEntryExpired != 0:
					ev.Type, ev.Value = KVExpired, nil
				case e.Flags&kvEntryDeleted != 0:
					ev.Type, ev.Value = KVDelete, nil
				}
				if !put(ev) {
					return
				}
			}
			from = max(from, rep.Rev)
		}
	}
}
