package mars

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Records and store features of the key-value store on replicas.

// Record kinds of the key-value store.
const (
	// StoreKVValue: a key; value: the key's value as is. The key's
	// revision is the record's.
	StoreKVValue StoreKind = 'v'
	// StoreLeaseRec: a lease; value: EncodeStoredLease. Its token is the
	// record's revision (a lease record is written once, then deleted).
	StoreLeaseRec StoreKind = 'L'
	// StoreKVResult: the result of one node's write, named
	// "<address>#<incarnation hex>#<seq>"; read only inside transactions
	// (Load and Watch may leave it out) and kept on a lease for
	// kvResultTTL. Its revision is the write's.
	StoreKVResult StoreKind = 'r'
)

// StoreLeaser is a Store whose records can hang on leases that expire on
// their own, by the store's clock (etcd's leases). A replica needs it for
// key TTLs and for leases; MemoryStore and etcdstore have it.
type StoreLeaser interface {
	// Grant makes a lease of at least ttl and returns its ID.
	Grant(ctx context.Context, ttl time.Duration) (int64, error)
	// KeepAlive starts a lease's TTL again; ErrStoreLeaseGone when it
	// expired or was revoked.
	KeepAlive(ctx context.Context, id int64) error
	// Revoke ends a lease now, deleting its records.
	Revoke(ctx context.Context, id int64) error
}

// StoreCAS is a Store that writes in one round trip when the records it
// names are at the revisions it expects (etcd's If/Then/Else); a replica
// uses it for puts and claims, which otherwise read first.
type StoreCAS interface {
	// WriteIf applies writes atomically if every record of expect is at
	// its Rev (0: absent); otherwise it writes nothing and returns expect's
	// records as they are. rev is the revision of the write or the read.
	WriteIf(ctx context.Context, expect []StoreRecord, writes []StoreWrite) (ok bool, cur []StoreRecord, rev int64, err error)
}

// WriteIf applies writes if expect's records are at their revisions.
func (s *memSession) WriteIf(ctx context.Context, expect []StoreRecord, writes []StoreWrite) (bool, []StoreRecord, int64, error) {
	keys := make([]StoreKey, len(expect))
	for i, e := range expect {
		keys[i] = e.StoreKey
	}
	var cur []StoreRecord
	ok := false
	rev, err := s.Update(ctx, keys, func(c []StoreRecord) ([]StoreWrite, error) {
		for i, e := range expect {
			if c[i].Rev != e.Rev {
				cur = c
				return nil, nil
			}
		}
		ok = true
		return writes, nil
	})
	return ok, cur, rev, err
}

// ErrStoreLeaseGone is returned by StoreLeaser.KeepAlive for a lease that
// expired or was revoked.
var ErrStoreLeaseGone = errors.New("mars: store lease gone")

// StoredLease is a lease record in a Store.
type StoredLease struct {
	Holder string `msgpack:"holder"`
	Inc    uint64 `msgpack:"inc"`
	TTL    int64  `msgpack:"ttl"` // ms
	SID    int64  `msgpack:"sid"` // the store lease it hangs on
	At     int64  `msgpack:"at"`  // Unix ms of the grant
}

// EncodeStoredLease encodes a lease record for a Store.
func EncodeStoredLease(l *StoredLease) []byte {
	b, _ := msgpack.Marshal(l) // only plain fields: cannot fail
	return b
}

// DecodeStoredLease decodes a lease record.
func DecodeStoredLease(b []byte) (*StoredLease, error) {
	if len(b) > 2*MaxAddrLen {
		return nil, fmt.Errorf("%w: stored lease of %d bytes", ErrProtocol, len(b))
	}
	var l StoredLease
	if err := msgpack.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%w: stored lease: %v", ErrProtocol, err)
	}
	if err := checkAddr("lease holder", l.Holder, true); err != nil {
		return nil, err
	}
	if l.TTL <= 0 {
		return nil, fmt.Errorf("%w: stored lease TTL %d", ErrProtocol, l.TTL)
	}
	return &l, nil
}

// StoredKVResult is the result of a write kept for its resends.
type StoredKVResult struct {
	Code uint64 `msgpack:"code,omitempty"`
	TTL  uint64 `msgpack:"ttl,omitempty"`
}

// EncodeStoredKVResult encodes a write's result for a Store.
func EncodeStoredKVResult(r *StoredKVResult) []byte {
	b, _ := msgpack.Marshal(r) // only plain fields: cannot fail
	return b
}

// DecodeStoredKVResult decodes a write's result.
func DecodeStoredKVResult(b []byte) (*StoredKVResult, error) {
	if len(b) > 64 {
		return nil, fmt.Errorf("%w: stored result of %d bytes", ErrProtocol, len(b))
	}
	var r StoredKVResult
	if err := msgpack.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: stored result: %v", ErrProtocol, err)
	}
	return &r, nil
}

// memLease is a lease of a MemoryStore.
type memLease struct {
	ttl     time.Duration
	expires time.Time
	timer   *time.Timer
}

// Grant makes a lease that expires after ttl unless kept alive.
func (s *memSession) Grant(ctx context.Context, ttl time.Duration) (int64, error) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases == nil {
		m.leases = make(map[int64]*memLease)
	}
	m.nextLease++
	id := m.nextLease
	l := &memLease{ttl: ttl, expires: time.Now().Add(ttl)}
	l.timer = time.AfterFunc(ttl, func() { m.expire(id) })
	m.leases[id] = l
	return id, nil
}

// KeepAlive starts a lease's TTL again.
func (s *memSession) KeepAlive(ctx context.Context, id int64) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.leases[id]
	if l == nil || !time.Now().Before(l.expires) {
		return ErrStoreLeaseGone
	}
	l.expires = time.Now().Add(l.ttl)
	l.timer.Reset(l.ttl)
	return nil
}

// Revoke ends a lease and deletes its records.
func (s *memSession) Revoke(ctx context.Context, id int64) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropLeaseLocked(id)
	return nil
}

func (m *MemoryStore) expire(id int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.leases[id]; l != nil && !time.Now().Before(l.expires) {
		m.dropLeaseLocked(id)
	}
}

// dropLeaseLocked deletes a lease and its records in one revision.
func (m *MemoryStore) dropLeaseLocked(id int64) {
	l := m.leases[id]
	if l == nil {
		return
	}
	l.timer.Stop()
	delete(m.leases, id)
	if m.dropLocked(func(r memRecord) bool { return r.lease == id }) {
		m.wakeLocked()
	}
}
