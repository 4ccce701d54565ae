package mars

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The cluster key-value store and leases: message kinds, limits, errors
// and the codec. See kv_server.go for MARS's side and kv_client.go for the
// node's.
//
// Compatibility: a node sends KindKV only to a MARS whose syncs carry
// syncKV (a MARS of an earlier revision answers the kind with a KindError
// "unknown message kind", which the node also takes as "not supported");
// MARS sends KindKVReply only in answer to KindKV. Nodes and MARS of an
// earlier revision never see either kind otherwise.
const (
	// KindKV: node -> MARS. A key-value or lease request.
	KindKV byte = 0x44
	// KindKVReply: MARS -> node. The answer to one KindKV request.
	KindKVReply byte = 0x45
)

// syncKV is a sync flag: this MARS serves KindKV.
const syncKV = 1 << 3

// Limits of the key-value store. Keys and lease names follow one rule
// (CheckKVKey); the totals are ServerOptions (MaxKVKeys, MaxKVBytes,
// MaxLeases, MaxLeaseTTL).
const (
	// MaxKVKeyLen is the longest key (and lease name) in bytes.
	MaxKVKeyLen = 256
	// MaxKVValueLen is the largest value in bytes.
	MaxKVValueLen = 256 << 10
	// MinLeaseTTL is the shortest lease TTL.
	MinLeaseTTL = time.Second
	// MinKVTTL is the shortest TTL of a put.
	MinKVTTL = time.Second
	// maxKVRequest bounds one KindKV message.
	maxKVRequest = MaxKVValueLen + 4<<10
	// maxKVReply bounds one KindKVReply message a node accepts.
	maxKVReply = 4 << 20
	// kvPage is the body size at which MARS ends a list page or a batch of
	// watch events (one entry may pass it).
	kvPage = 512 << 10
	// maxKVEntries bounds the entries of one reply.
	maxKVEntries = 1 << 16
)

// Request operations.
const (
	kvPut     = 1
	kvGet     = 2
	kvDel     = 3
	kvList    = 4
	kvWatch   = 5 // a watch poll: the changes after Rev, or wait for one
	kvClaim   = 6
	kvRenew   = 7
	kvRelease = 8
	kvLeases  = 9 // list the leases under a prefix: entries [name, holder, token]
)

// Request flags.
const (
	kvFlagCAS      = 1 << 0 // put, delete: only if the key's revision is Rev (0: absent)
	kvFlagKeysOnly = 1 << 1 // list: no values
)

// Entry flags.
const (
	kvEntryDeleted = 1 << 0
	kvEntryExpired = 1 << 1 // with deleted: its TTL ran out
)

// Reply codes.
const (
	kvOK          = 0
	kvNotFound    = 1  // no such key (get, delete with CAS)
	kvConflict    = 2  // CAS: the key's revision is another (reply Rev)
	kvLimit       = 3  // a limit (sizes, totals)
	kvBadKey      = 4  // key or lease name refused
	kvBadRequest  = 5  // malformed request, bad TTL
	kvHeld        = 6  // claim: another node holds the lease (reply Holder)
	kvNotLive     = 7  // claim: the node is not listed online (draining, offline, unknown)
	kvLeaseGone   = 8  // renew: the lease is not held with that token any more
	kvUnavailable = 9  // try again (MARS starting, store unreachable)
	kvCompacted   = 10 // watch: the history after Rev is gone; reply Rev is the current revision
	kvBadApp      = 11 // app name refused
)

// Errors of the key-value store and leases. Every error a KV or lease
// call returns wraps one of these or ErrLimit, ErrTimeout, ErrClosed.
var (
	// ErrKVUnsupported: the MARS in use predates the key-value store.
	ErrKVUnsupported = errors.New("mars: this MARS does not serve the key-value store (upgrade it)")
	// ErrBadKVKey: a key or lease name breaks CheckKVKey's rule.
	ErrBadKVKey = errors.New("mars: invalid key")
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("mars: key not found")
	// ErrConflict: a compare-and-swap found another revision.
	ErrConflict = errors.New("mars: revision conflict")
	// ErrLeaseHeld: another node holds the lease (or this node does already).
	ErrLeaseHeld = errors.New("mars: lease held")
	// ErrLeaseLost: the lease is no longer held (expired, released, or
	// MARS granted it to another node after it expired).
	ErrLeaseLost = errors.New("mars: lease lost")
	// ErrNotLive: only nodes MARS lists online (not draining, not guests)
	// may claim leases.
	ErrNotLive = errors.New("mars: node not online")
	// ErrUnavailable: MARS cannot serve the request now (its store is
	// unreachable, or it restarted and holds claims back); try again. A
	// write whose store call failed is sent again by the client until the
	// call's deadline: then it is the store's last failure.
	ErrUnavailable = errors.New("mars: temporarily unavailable")
)

// IsNotFound reports whether err says the key does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsConflict reports whether err is a failed compare-and-swap.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsLeaseHeld reports whether err says the lease is held.
func IsLeaseHeld(err error) bool { return errors.Is(err, ErrLeaseHeld) }

// IsLeaseLost reports whether err says a lease was lost.
func IsLeaseLost(err error) bool { return errors.Is(err, ErrLeaseLost) }

// KVError is an error MARS returned for a key-value or lease request.
type KVError struct {
	Code    int
	Message string
	// Rev: for a conflict, the key's current revision (0: absent).
	Rev int64
	// Holder: for ErrLeaseHeld, the mesh address of the holder.
	Holder string
}

func (e *KVError) Error() string {
	return "mars: " + e.Message
}

// Unwrap lets errors.Is match the sentinel of the code.
func (e *KVError) Unwrap() error {
	switch e.Code {
	case kvNotFound:
		return ErrNotFound
	case kvConflict:
		return ErrConflict
	case kvLimit:
		return ErrLimit
	case kvBadKey:
		return ErrBadKVKey
	case kvHeld:
		return ErrLeaseHeld
	case kvNotLive:
		return ErrNotLive
	case kvLeaseGone:
		return ErrLeaseLost
	case kvUnavailable, kvCompacted:
		return ErrUnavailable
	case kvBadApp:
		return ErrBadApp
	}
	return ErrRemote
}

// CheckKVKey returns an error wrapping ErrBadKVKey unless key is 1 to
// MaxKVKeyLen bytes of UTF-8 without control characters. Keys are
// compared and listed byte-wise; "/" has no special meaning but makes a
// good separator for List and Watch prefixes.
func CheckKVKey(key string) error {
	if len(key) == 0 || len(key) > MaxKVKeyLen {
		return fmt.Errorf("%w: %d bytes, want 1..%d", ErrBadKVKey, len(key), MaxKVKeyLen)
	}
	return checkKVText(key)
}

// checkKVPrefix checks a List or Watch prefix ("" is every key).
func checkKVPrefix(p string) error {
	if len(p) > MaxKVKeyLen {
		return fmt.Errorf("%w: prefix of %d bytes, limit %d", ErrBadKVKey, len(p), MaxKVKeyLen)
	}
	return checkKVText(p)
}

func checkKVText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not UTF-8", ErrBadKVKey)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: %q holds a control character", ErrBadKVKey, s)
	}
	return nil
}

// kvReq is a KindKV message:
//
//	[id, op, app, addr, inc, seq, base, key, value, rev, ttlMs, kvid, flags, after]
//
// seq numbers the node's writes (put, delete, claim; 0 for the rest) and
// base says every write up to it has been answered, so MARS may forget
// their results: a write sent again (after a lost reply or a failover)
// gets the result of its first application. rev is the CAS revision
// (put, delete), the revision the answer must include at least (get,
// list), the revision to watch after (watch) or the lease token (renew,
// release); kvid names the history rev belongs to. Fields a later
// revision appends are skipped.
type kvReq struct {
	ID    uint64
	Op    uint64
	App   string
	Addr  string
	Inc   uint64
	Seq   uint64
	Base  uint64
	Key   string
	Value []byte
	Rev   int64
	TTL   uint64 // ms
	KVID  uint64
	Flags uint64
	After string // list: continue after this key
}

const kvReqFields = 14

func (m *kvReq) append(b []byte) []byte {
	b = appendArrayLen(b, kvReqFields)
	b = appendUint(b, m.ID)
	b = appendUint(b, m.Op)
	b = appendString(b, m.App)
	b = appendString(b, m.Addr)
	b = appendUint(b, m.Inc)
	b = appendUint(b, m.Seq)
	b = appendUint(b, m.Base)
	b = appendString(b, m.Key)
	b = appendBin(b, m.Value)
	b = appendInt(b, m.Rev)
	b = appendUint(b, m.TTL)
	b = appendUint(b, m.KVID)
	b = appendUint(b, m.Flags)
	return appendString(b, m.After)
}

// decodeKVReq parses a request; the values it returns alias p.
func decodeKVReq(p []byte) (*kvReq, error) {
	if len(p) > maxKVRequest {
		return nil, fmt.Errorf("%w: kv request of %d bytes, limit %d", ErrProtocol, len(p), maxKVRequest)
	}
	r := reader{b: p}
	n := r.arrayLen()
	if r.err == nil && n < kvReqFields {
		return nil, fmt.Errorf("%w: kv request has %d fields, want %d", ErrProtocol, n, kvReqFields)
	}
	m := &kvReq{ID: r.uint(), Op: r.uint(), App: r.str(MaxAppLen * 4), Addr: r.str(MaxAddrLen), Inc: r.uint(),
		Seq: r.uint(), Base: r.uint(), Key: r.str(MaxKVKeyLen * 4)}
	m.Value = r.bin(MaxKVValueLen)
	m.Rev = r.int()
	m.TTL = r.uint()
	m.KVID = r.uint()
	m.Flags = r.uint()
	m.After = r.str(MaxKVKeyLen * 4)
	for i := kvReqFields; i < n && r.err == nil; i++ {
		r.skip(maxValueDepth)
	}
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: kv request: %v", ErrProtocol, r.err)
	}
	return m, nil
}

// peekKVID reads the id of a request that may not decode otherwise (0 if
// it cannot), so a refusal still reaches the call that sent it.
func peekKVID(p []byte) uint64 {
	r := reader{b: p}
	r.arrayLen()
	id := r.uint()
	if r.err != nil {
		return 0
	}
	return id
}

// kvEntry is one key, or one change of a key in a watch batch.
type kvEntry struct {
	Key   string
	Value []byte
	Rev   int64
	Flags uint64 // kvEntryDeleted, kvEntryExpired
}

// kvReply is a KindKVReply message:
//
//	[id, code, message, kvid, rev, [entry...], more, ttlMs, holder]
//
// with each entry [key, value, rev, flags]. rev is the write's revision
// (a claim's: the lease token), the conflicting revision, or the revision
// a read or a watch batch is complete up to.
type kvReply struct {
	ID      uint64
	Code    uint64
	Msg     string
	KVID    uint64
	Rev     int64
	Entries []kvEntry
	More    bool
	TTL     uint64 // ms
	Holder  string
}

const kvReplyFields = 9

func (m *kvReply) append(b []byte) []byte {
	b = appendArrayLen(b, kvReplyFields)
	b = appendUint(b, m.ID)
	b = appendUint(b, m.Code)
	msg := m.Msg
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	b = appendString(b, msg)
	b = appendUint(b, m.KVID)
	b = appendInt(b, m.Rev)
	b = appendArrayLen(b, len(m.Entries))
	for i := range m.Entries {
		b = appendKVEntry(b, &m.Entries[i])
	}
	more := uint64(0)
	if m.More {
		more = 1
	}
	b = appendUint(b, more)
	b = appendUint(b, m.TTL)
	return appendString(b, m.Holder)
}

func appendKVEntry(b []byte, e *kvEntry) []byte {
	b = appendArrayLen(b, 4)
	b = appendString(b, e.Key)
	b = appendBin(b, e.Value)
	b = appendInt(b, e.Rev)
	return appendUint(b, e.Flags)
}

// kvEntrySize is about what an entry takes in a reply.
func kvEntrySize(e *kvEntry) int { return len(e.Key) + len(e.Value) + 24 }

// decodeKVReply parses a reply; the entries it returns own their bytes.
func decodeKVReply(p []byte) (*kvReply, error) {
	if len(p) > maxKVReply {
		return nil, fmt.Errorf("%w: kv reply of %d bytes, limit %d", ErrProtocol, len(p), maxKVReply)
	}
	r := reader{b: p}
	n := r.arrayLen()
	if r.err == nil && n < kvReplyFields {
		return nil, fmt.Errorf("%w: kv reply has %d fields, want %d", ErrProtocol, n, kvReplyFields)
	}
	m := &kvReply{ID: r.uint(), Code: r.uint(), Msg: r.str(maxMessage), KVID: r.uint(), Rev: r.int()}
	r.list(maxKVEntries, 4, func() {
		e := kvEntry{Key: r.str(MaxKVKeyLen * 4)}
		if v := r.bin(MaxKVValueLen); v != nil {
			e.Value = append([]byte{}, v...)
		}
		e.Rev = r.int()
		e.Flags = r.uint()
		m.Entries = append(m.Entries, e)
	})
	m.More = r.uint() != 0
	m.TTL = r.uint()
	m.Holder = r.str(MaxAddrLen)
	for i := kvReplyFields; i < n && r.err == nil; i++ {
		r.skip(maxValueDepth)
	}
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: kv reply: %v", ErrProtocol, r.err)
	}
	return m, nil
}

// appendBin writes a byte string; nil is msgpack nil (an empty value is
// an empty bin).
func appendBin(b []byte, v []byte) []byte {
	n := len(v)
	switch {
	case v == nil:
		return appendNil(b)
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, v...)
}

// bin reads a byte string of at most max bytes (aliasing the buffer); nil
// reads as nil, a string as its bytes.
func (r *reader) bin(max int) []byte {
	if r.isNil() {
		return nil
	}
	c, ok := r.peek()
	if !ok {
		r.fail(errShort)
		return nil
	}
	var n uint64
	switch c {
	case 0xc4:
		r.off++
		n = r.uintN(1)
	case 0xc5:
		r.off++
		n = r.uintN(2)
	case 0xc6:
		r.off++
		n = r.uintN(4)
	default:
		return r.strBytes(max)
	}
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.fail(fmt.Errorf("value of %d bytes, limit %d", n, max))
		return nil
	}
	return r.next(int(n))
}

// kvErrorOf turns a non-OK reply into an error.
func kvErrorOf(m *kvReply) error {
	return &KVError{Code: int(m.Code), Message: m.Msg, Rev: m.Rev, Holder: m.Holder}
}
