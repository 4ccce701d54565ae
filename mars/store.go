package mars

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// Store keeps the state of MARS replicas: several servers over one Store
// (ServerOptions.Store) list the same nodes and shared data, and any of
// them serves any node. A Store is a small transactional key-value store
// with revisions: every write takes the store's next revision, and those
// revisions are the versions nodes sync from, so a node that moves to
// another replica continues with a delta. Each server keeps a copy of the
// whole state in memory (loaded, then kept current by Watch) and answers
// from it; only changes go to the store. go.etcd.io is behind package
// mars/etcdstore; MemoryStore holds the state in this process.
//
// A server without a Store keeps its state in its own memory (the
// default; with ServerOptions.DataDir it persists the shared data).
type Store interface {
	// ID identifies the state: every replica over the store reports it to
	// nodes as MARS's incarnation, and it changes only when the store
	// starts over empty (nodes then re-register, as after a MARS restart).
	ID() uint64
	// Load returns every record and the revision they are at.
	Load(ctx context.Context) ([]StoreRecord, int64, error)
	// Watch calls fn with every change after revision rev, in revision
	// order, on one goroutine, until ctx ends or the watch fails; it then
	// returns the error (ErrStoreCompacted when rev is no longer in the
	// store's history). fn's rev says every change up to it was delivered:
	// the server hands that revision to nodes as the version of their view,
	// so it must never run ahead of the changes (a later call never carries
	// a change at or below it).
	Watch(ctx context.Context, rev int64, fn func(changes []StoreRecord, rev int64)) error
	// Progress makes Watch report, soon, a revision at least the store's
	// current one when Progress was called, even when nothing changed (it
	// may write a marker of its own for that).
	Progress(ctx context.Context) error
	// Update reads the records at keys (Rev 0 for a missing one), calls fn
	// with them, and writes what fn returns, atomically: if any of the
	// records changed meanwhile, it reads them again and calls fn again.
	// It returns the revision of the write, or the store's current
	// revision when fn writes nothing. An error from fn is returned as is.
	Update(ctx context.Context, keys []StoreKey, fn func(cur []StoreRecord) ([]StoreWrite, error)) (int64, error)
	// Close ends this replica's session: its Session records expire.
	Close() error
}

// ErrStoreCompacted is returned by Store.Watch when the revision to watch
// from is no longer in the store's history; the server loads again.
var ErrStoreCompacted = errors.New("mars: store history compacted")

// StoreKind is what a record holds.
type StoreKind byte

// Record kinds.
const (
	StoreNode   StoreKind = 'n' // a listed node; value: EncodeStoredNode
	StoreGuest  StoreKind = 'g' // a guest (never listed); value as for a node
	StoreShared StoreKind = 'k' // a shared-data key; value: decimal int16
	// StoreAck: a node's applied-change mark (EncodeStoredAck), written
	// without a session and read only inside transactions; Load and Watch
	// may leave it out, and the state ignores it.
	StoreAck StoreKind = 'a'
)

// StoreKey names a record: an app, a kind and a name (a mesh address or a
// shared-data key).
type StoreKey struct {
	App  string
	Kind StoreKind
	Name string
}

// StoreRecord is a record as read or watched.
type StoreRecord struct {
	StoreKey
	Value   []byte
	Rev     int64 // revision of its last change (for a deleted one: of the deletion); 0 = missing
	Deleted bool
}

// StoreWrite is one write of an Update.
type StoreWrite struct {
	StoreKey
	Value  []byte
	Delete bool
	// Session records expire when the writing replica's session ends
	// (its process dies, or cannot reach the store for a while).
	Session bool
	// Lease attaches the record to a lease of StoreLeaser.Grant: it is
	// deleted when the lease expires or is revoked.
	Lease int64
}

// StoredNode is a node or guest record in a Store.
type StoredNode struct {
	Inc      uint64 `msgpack:"inc"`
	PrevInc  uint64 `msgpack:"prev,omitempty"` // the incarnation this one replaced; its reports are refused
	Type     string `msgpack:"type"`
	Role     string `msgpack:"role"`
	Status   Status `msgpack:"status"`
	EndPoint string `msgpack:"ep,omitempty"`
	Values   []byte `msgpack:"values,omitempty"` // msgpack map, or nil
	Alive    bool   `msgpack:"alive"`
	Ack      uint64 `msgpack:"ack"`   // every change of this incarnation up to here is applied
	Owner    uint64 `msgpack:"owner"` // the replica that serves the node
	// Life is the membership state the node declares: 0 (online),
	// StateJoining or StateDraining.
	Life State `msgpack:"life,omitempty"`
	// Left marks a node that left gracefully; the record is deleted right
	// after it is written, and replicas list the node gone (left).
	Left bool `msgpack:"left,omitempty"`
}

// life is the membership state the record declares.
func (n *StoredNode) life() State {
	if n.Life == StateJoining || n.Life == StateDraining {
		return n.Life
	}
	return StateOnline
}

// storedLife is the Life field for a declared state.
func storedLife(l State) State {
	if l == StateOnline {
		return 0
	}
	return l
}

// EncodeStoredNode encodes a node record for a Store.
func EncodeStoredNode(n *StoredNode) []byte {
	b, _ := msgpack.Marshal(n) // only plain fields: cannot fail
	return b
}

// DecodeStoredNode decodes a node record; it checks the fields as MARS
// checks a report.
func DecodeStoredNode(b []byte) (*StoredNode, error) {
	if len(b) > MaxValuesSize+4*MaxAddrLen {
		return nil, fmt.Errorf("%w: stored node of %d bytes", ErrProtocol, len(b))
	}
	var n StoredNode
	if err := msgpack.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("%w: stored node: %v", ErrProtocol, err)
	}
	i := nodeInfo{Type: n.Type, Role: n.Role, Status: n.Status, EndPoint: n.EndPoint, Values: n.Values}
	if err := i.check(); err != nil {
		return nil, err
	}
	if len(n.Values) > 0 {
		if err := checkValues(n.Values); err != nil {
			return nil, fmt.Errorf("%w: stored node values: %v", ErrBadNode, err)
		}
	}
	return &n, nil
}

// StoredAck is a node's Ack kept apart from its record, outside any
// session: when the record vanishes (removed after RemoveAfter of silence,
// or expired with a dead replica's session before a takeover) and the node
// registers again with the changes it holds unacknowledged, those applied
// already are not applied twice.
type StoredAck struct {
	Inc uint64 `msgpack:"inc"`
	Ack uint64 `msgpack:"ack"`
}

// EncodeStoredAck encodes an applied-change mark for a Store.
func EncodeStoredAck(a *StoredAck) []byte {
	b, _ := msgpack.Marshal(a) // only plain fields: cannot fail
	return b
}

// DecodeStoredAck decodes an applied-change mark.
func DecodeStoredAck(b []byte) (*StoredAck, error) {
	if len(b) > 64 {
		return nil, fmt.Errorf("%w: stored ack of %d bytes", ErrProtocol, len(b))
	}
	var a StoredAck
	if err := msgpack.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: stored ack: %v", ErrProtocol, err)
	}
	return &a, nil
}

// EncodeStoredValue encodes a shared-data value for a Store.
func EncodeStoredValue(v int16) []byte { return strconv.AppendInt(nil, int64(v), 10) }

// DecodeStoredValue decodes a shared-data value.
func DecodeStoredValue(b []byte) (int16, error) {
	v, err := strconv.ParseInt(string(b), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%w: stored value %q: want an int16", ErrProtocol, b)
	}
	return int16(v), nil
}

func (n *StoredNode) info() nodeInfo {
	return nodeInfo{Type: n.Type, Role: n.Role, Status: n.Status, EndPoint: n.EndPoint, Values: n.Values}
}

func (n *StoredNode) setInfo(i *nodeInfo) {
	n.Type, n.Role, n.Status, n.EndPoint, n.Values = i.Type, i.Role, i.Status, i.EndPoint, i.Values
}
