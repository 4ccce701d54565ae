package mars

// The node's own record and shared data: setters that queue a change for
// the next report.

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

func (c *Client) setInfo(f func(i *nodeInfo) error) error {
	c.mu.Lock()
	i := c.info
	if err := f(&i); err != nil {
		c.mu.Unlock()
		return err
	}
	if err := i.check(); err != nil {
		c.mu.Unlock()
		return err
	}
	if i.equal(&c.info) {
		c.mu.Unlock()
		return nil
	}
	c.info = i
	c.infoSeq = c.changedLocked()
	c.mu.Unlock()
	c.wake()
	return nil
}

// SetType sets the node's type (at most MaxLabelLen bytes).
func (c *Client) SetType(t string) error {
	return c.setInfo(func(i *nodeInfo) error { i.Type = t; return nil })
}

// SetRole sets the node's role (at most MaxLabelLen bytes).
func (c *Client) SetRole(r string) error {
	return c.setInfo(func(i *nodeInfo) error { i.Role = r; return nil })
}

// SetStatus sets the node's status (online, offline or taken).
func (c *Client) SetStatus(s Status) error {
	return c.setInfo(func(i *nodeInfo) error { i.Status = s; return nil })
}

// SetEndPoint sets the node's public endpoint.
func (c *Client) SetEndPoint(ep string) error {
	return c.setInfo(func(i *nodeInfo) error { i.EndPoint = ep; return nil })
}

// SetValue sets one metadata value; nil removes it. v must encode with
// msgpack, maps inside it must have string keys, and all values together
// must encode to at most MaxValuesSize bytes.
func (c *Client) SetValue(name string, v interface{}) error {
	c.mu.Lock()
	vals := make(map[string]interface{}, len(c.values)+1)
	for k, x := range c.values {
		vals[k] = x
	}
	if v == nil {
		delete(vals, name)
	} else {
		vals[name] = v
	}
	b, err := encodeValues(vals)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.values = ownValues(b)
	changed := string(b) != string(c.info.Values)
	if changed {
		c.info.Values = b
		c.infoSeq = c.changedLocked()
	}
	c.mu.Unlock()
	if changed {
		c.wake()
	}
	return nil
}

// ownValues is what the node's own values read back as: what every other
// node decodes from the same bytes, so a value has one Go type wherever it
// is read (see View).
func ownValues(b []byte) map[string]interface{} {
	if m := decodeValues(b); m != nil {
		return m
	}
	return make(map[string]interface{})
}

func encodeValues(vals map[string]interface{}) ([]byte, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	var buf bytesBuffer
	enc.Reset(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(vals); err != nil {
		return nil, fmt.Errorf("%w: values: %v", ErrBadNode, err)
	}
	if len(buf) > MaxValuesSize {
		return nil, fmt.Errorf("%w: values of %d bytes, limit %d", ErrBadNode, len(buf), MaxValuesSize)
	}
	if err := checkValues(buf); err != nil {
		return nil, fmt.Errorf("%w: values: %v", ErrBadNode, err)
	}
	return buf, nil
}

type bytesBuffer []byte

func (b *bytesBuffer) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// SetApp moves the node to another app name. The node leaves the old app
// (as with Close) and registers in the new one; its view empties and fills
// again from the new app; unacknowledged shared-data changes are dropped.
func (c *Client) SetApp(app string) error {
	if err := CheckApp(app); err != nil {
		return err
	}
	c.mu.Lock()
	if app == c.app {
		c.mu.Unlock()
		return nil
	}
	if c.oldApp == nil {
		old := c.app
		c.oldApp = &old
	}
	c.app = app
	c.mu.Unlock()
	c.wake()
	return nil
}

// SetSharedData sets a shared key (1..MaxKeyLen bytes) for the whole app.
// The change reaches MARS within milliseconds and every node's view within
// about one Interval; this node's view shows it once MARS has answered.
// Concurrent writers of one key race: the last to reach MARS wins.
func (c *Client) SetSharedData(key string, v int16) error {
	return c.addOp(op{Key: key, Val: v})
}

// AddSharedData adds delta to a shared key (a missing key counts as 0;
// int16 arithmetic wraps). Unlike a read followed by SetSharedData, adds
// from any number of nodes never overwrite each other: MARS applies each
// exactly once, also when the node moves to another MARS replica of a
// shared store. Adds not yet sent are merged into one.
func (c *Client) AddSharedData(key string, delta int16) error {
	return c.addOp(op{Key: key, Val: delta, Add: true})
}

// RemoveSharedData removes a shared key from the whole app.
func (c *Client) RemoveSharedData(key string) error {
	return c.addOp(op{Key: key, Del: true})
}

func (c *Client) addOp(o op) error {
	if err := CheckKey(o.Key); err != nil {
		return err
	}
	c.mu.Lock()
	if _, ok := c.ops[o.Key]; !ok && len(c.ops) >= 100_000 {
		c.mu.Unlock()
		return fmt.Errorf("%w: %d shared data changes waiting for MARS", ErrLimit, len(c.ops))
	}
	slot := o.Key
	if o.Add {
		prev, ok := c.ops[o.Key]
		switch {
		case ok && prev.Seq > c.sentMax: // never sent: merge
			switch {
			case prev.Del:
				o = op{Key: o.Key, Val: o.Val} // removed, then added to: set
			case prev.Add:
				o.Val += prev.Val
			default:
				o = op{Key: o.Key, Val: prev.Val + o.Val}
			}
		case ok: // the earlier change may be applied already: keep both
			slot = addSlot(o.Key, c.seq+1)
		}
	}
	o.Seq = c.changedLocked()
	c.ops[slot] = o
	c.mu.Unlock()
	c.wake()
	return nil
}

// addSlot is the outbox slot of an add that cannot be merged into the
// change already queued for its key (that one may have reached MARS).
func addSlot(key string, seq uint64) string {
	return fmt.Sprintf("%s\x00%d", key, seq)
}
