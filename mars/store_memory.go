package mars

import (
	"context"
	"fmt"
	"sync"
)

// MemoryStore is a Store held in this process's memory: several servers
// in one process over one MemoryStore are replicas of one registry. It
// behaves as a shared store does (revisions, watches, sessions), which
// makes it the test bed for the replica logic; it keeps the last
// memoryHistory changes for watches.
type MemoryStore struct {
	mu      sync.Mutex
	id      uint64
	rev     int64
	recs    map[StoreKey]memRecord
	hist    []StoreRecord
	wake    chan struct{} // closed and replaced after every write or Progress
	session uint64

	leases    map[int64]*memLease // kv_storekinds.go
	nextLease int64
}

type memRecord struct {
	value   []byte
	rev     int64
	session uint64 // 0: no session
	lease   int64  // 0: no lease
}

const memoryHistory = 1 << 20

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{id: newIncarnation(), recs: make(map[StoreKey]memRecord), wake: make(chan struct{})}
}

// Session returns a Store for one replica; the Session records written
// through it are deleted when it is closed.
func (m *MemoryStore) Session() Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.session++
	return &memSession{m: m, id: m.session}
}

type memSession struct {
	m      *MemoryStore
	id     uint64
	once   sync.Once
	closed bool
}

func (s *memSession) ID() uint64 { return s.m.id }

func (s *memSession) Load(ctx context.Context) ([]StoreRecord, int64, error) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]StoreRecord, 0, len(m.recs))
	for k, r := range m.recs {
		out = append(out, StoreRecord{StoreKey: k, Value: r.value, Rev: r.rev})
	}
	return out, m.rev, nil
}

func (s *memSession) Watch(ctx context.Context, rev int64, fn func([]StoreRecord, int64)) error {
	m := s.m
	for {
		m.mu.Lock()
		if len(m.hist) > 0 && rev < m.hist[0].Rev-1 {
			m.mu.Unlock()
			return ErrStoreCompacted
		}
		i := len(m.hist)
		for i > 0 && m.hist[i-1].Rev > rev {
			i--
		}
		batch := append([]StoreRecord(nil), m.hist[i:]...)
		now, wake := m.rev, m.wake
		m.mu.Unlock()
		if now > rev || len(batch) > 0 {
			fn(batch, now)
			rev = now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// Progress takes a revision with no change (as etcdstore's marker write
// does), which every watch reports.
func (s *memSession) Progress(ctx context.Context) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.wakeLocked()
	return nil
}

// dropLocked deletes the records match picks, in one revision; it
// reports whether there were any.
func (m *MemoryStore) dropLocked(match func(memRecord) bool) bool {
	bumped := false
	for k, r := range m.recs {
		if !match(r) {
			continue
		}
		if !bumped {
			m.rev++
			bumped = true
		}
		delete(m.recs, k)
		m.hist = append(m.hist, StoreRecord{StoreKey: k, Rev: m.rev, Deleted: true})
	}
	return bumped
}

func (m *MemoryStore) wakeLocked() {
	close(m.wake)
	m.wake = make(chan struct{})
}

func (s *memSession) Update(ctx context.Context, keys []StoreKey, fn func([]StoreRecord) ([]StoreWrite, error)) (int64, error) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	cur := make([]StoreRecord, len(keys))
	for i, k := range keys {
		r := m.recs[k]
		cur[i] = StoreRecord{StoreKey: k, Value: r.value, Rev: r.rev}
	}
	writes, err := fn(cur)
	if err != nil || len(writes) == 0 {
		return m.rev, err
	}
	for _, w := range writes {
		if w.Lease != 0 && m.leases[w.Lease] == nil {
			return 0, fmt.Errorf("%w: lease %d", ErrStoreLeaseGone, w.Lease)
		}
	}
	m.rev++
	for _, w := range writes {
		if w.Delete {
			if _, ok := m.recs[w.StoreKey]; ok {
				delete(m.recs, w.StoreKey)
				m.hist = append(m.hist, StoreRecord{StoreKey: w.StoreKey, Rev: m.rev, Deleted: true})
			}
			continue
		}
		r := memRecord{value: append([]byte(nil), w.Value...), rev: m.rev}
		if w.Session {
			r.session = s.id
		}
		r.lease = w.Lease
		m.recs[w.StoreKey] = r
		m.hist = append(m.hist, StoreRecord{StoreKey: w.StoreKey, Value: r.value, Rev: m.rev})
	}
	if len(m.hist) > memoryHistory {
		m.hist = append([]StoreRecord(nil), m.hist[len(m.hist)-memoryHistory/2:]...)
	}
	m.wakeLocked()
	return m.rev, nil
}

// Close deletes the session's records, as an expired lease would.
func (s *memSession) Close() error {
	s.once.Do(func() {
		m := s.m
		m.mu.Lock()
		defer m.mu.Unlock()
		s.closed = true
		m.dropLocked(func(r memRecord) bool { return r.session == s.id })
		m.wakeLocked()
	})
	return nil
}
