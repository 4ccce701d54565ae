package mars

import (
	"errors"
	"fmt"
)

// The MARS messages and their msgpack codec. Every message is a positional
// msgpack array; trailing optional fields may be left out, and fields a
// later revision appends are skipped by this one.

// Report flags.
const (
	flagGuest = 1 << 0
)

// report is a node's periodic message to MARS.
//
//	[version, app, addr, inc, flags, marsInc, ver, from, seq, info?, ops?, seed?, seedAt?, life?, digest?]
//
// An op is [seq, key] (remove), [seq, key, val] (set) or
// [seq, key, delta, 1] (add). The trailing fields may be left out. ops and info cover every local
// change with a sequence number in (from, seq]; MARS acknowledges the
// highest seq up to which it has seen everything. seed carries the shared
// data of the node's view when it re-registers with a new MARS; seedAt is
// when that view was last synced (Unix ms). life is the node's membership
// state as it declares it (StateJoining, StateOnline, StateDraining): left
// out (and then the fields before it may be nil/empty) it is online, so a
// MARS of an earlier revision, which skips it, lists the node online.
// digest (digest.go) is the digest of the node's view, sent while the view
// comes from another MARS incarnation than the one the node now reports
// to; a MARS of an earlier revision skips it.
type report struct {
	App     string
	Addr    string
	Inc     uint64
	Flags   uint64
	MarsInc uint64 // MARS incarnation the node's view comes from (0: none)
	Ver     uint64 // version of the node's view
	From    uint64
	Seq     uint64
	Info    *nodeInfo
	Ops     []op
	Seed    []kv
	SeedAt  int64
	Life    State // 0 or StateOnline: online (left out)
	Digest  *digest
}

// life is the membership state the report declares.
func (m *report) life() State {
	if m.Life == 0 {
		return StateOnline
	}
	return m.Life
}

func (m *report) append(b []byte) []byte {
	n := 9
	switch {
	case m.Digest != nil:
		n = 15
	case m.Life != 0 && m.Life != StateOnline:
		n = 14
	case m.SeedAt != 0 || len(m.Seed) > 0:
		n = 13
	case len(m.Ops) > 0:
		n = 11
	case m.Info != nil:
		n = 10
	}
	b = appendArrayLen(b, n)
	b = appendUint(b, protoVersion)
	b = appendString(b, m.App)
	b = appendString(b, m.Addr)
	b = appendUint(b, m.Inc)
	b = appendUint(b, m.Flags)
	b = appendUint(b, m.MarsInc)
	b = appendUint(b, m.Ver)
	b = appendUint(b, m.From)
	b = appendUint(b, m.Seq)
	if n == 9 {
		return b
	}
	if m.Info == nil {
		b = appendNil(b)
	} else {
		b = appendArrayLen(b, 5)
		b = appendString(b, m.Info.Type)
		b = appendString(b, m.Info.Role)
		b = appendUint(b, uint64(m.Info.Status))
		b = appendString(b, m.Info.EndPoint)
		if len(m.Info.Values) == 0 {
			b = appendNil(b)
		} else {
			b = append(b, m.Info.Values...)
		}
	}
	if n == 10 {
		return b
	}
	b = appendArrayLen(b, len(m.Ops))
	for _, o := range m.Ops {
		switch {
		case o.Del:
			b = appendArrayLen(b, 2)
			b = appendUint(b, o.Seq)
			b = appendString(b, o.Key)
		case o.Add:
			b = appendArrayLen(b, 4)
			b = appendUint(b, o.Seq)
			b = appendString(b, o.Key)
			b = appendInt(b, int64(o.Val))
			b = appendUint(b, 1)
		default:
			b = appendArrayLen(b, 3)
			b = appendUint(b, o.Seq)
			b = appendString(b, o.Key)
			b = appendInt(b, int64(o.Val))
		}
	}
	if n == 11 {
		return b
	}
	b = appendMapLen(b, len(m.Seed))
	for _, e := range m.Seed {
		b = appendString(b, e.Key)
		b = appendInt(b, int64(e.Val))
	}
	b = appendInt(b, m.SeedAt)
	if n == 13 {
		return b
	}
	b = appendUint(b, uint64(m.life()))
	if n == 14 {
		return b
	}
	return appendDigest(b, m.Digest)
}

// decodeReport parses a report. Keys are read up to MaxAddrLen bytes so a
// key that is too long is reported as a bad key, not a bad message; the
// caller validates keys, app and node info.
func decodeReport(p []byte) (*report, error) {
	if len(p) > MaxReportSize {
		return nil, fmt.Errorf("%w: report of %d bytes, limit %d", ErrProtocol, len(p), MaxReportSize)
	}
	r := reader{b: p}
	n := r.arrayLen()
	if r.err == nil && n < 9 {
		return nil, fmt.Errorf("%w: report has %d fields, want at least 9", ErrProtocol, n)
	}
	if v := r.uint(); r.err == nil && v != protoVersion {
		return nil, fmt.Errorf("%w: protocol version %d, want %d", ErrProtocol, v, protoVersion)
	}
	m := &report{}
	m.App = r.str(MaxAppLen * 4)
	m.Addr = r.str(MaxAddrLen)
	m.Inc = r.uint()
	m.Flags = r.uint()
	m.MarsInc = r.uint()
	m.Ver = r.uint()
	m.From = r.uint()
	m.Seq = r.uint()
	if n > 9 && !r.isNil() {
		if k := r.arrayLen(); r.err == nil && k != 5 {
			r.fail(fmt.Errorf("%w: node info has %d fields, want 5", errType, k))
		}
		i := &nodeInfo{}
		i.Type = r.str(MaxLabelLen)
		i.Role = r.str(MaxLabelLen)
		i.Status = Status(r.uint())
		i.EndPoint = r.str(MaxAddrLen)
		i.Values = r.rawValues(MaxValuesSize)
		m.Info = i
	}
	if n > 10 {
		k := r.arrayLen()
		if k > maxOpsPerReport {
			r.fail(fmt.Errorf("%d ops, limit %d", k, maxOpsPerReport))
		}
		if r.err == nil && k > 0 {
			m.Ops = make([]op, 0, k)
		}
		for i := 0; i < k && r.err == nil; i++ {
			f := r.arrayLen()
			if r.err == nil && (f < 2 || f > 4) {
				r.fail(fmt.Errorf("%w: op has %d fields", errType, f))
			}
			o := op{Seq: r.uint(), Key: r.str(MaxAddrLen)}
			switch f {
			case 2:
				o.Del = true
			case 3:
				o.Val = r.int16()
			case 4:
				o.Val = r.int16()
				if k := r.uint(); r.err == nil && k != 1 {
					r.fail(fmt.Errorf("%w: op kind %d", errType, k))
				}
				o.Add = true
			}
			m.Ops = append(m.Ops, o)
		}
	}
	if n > 11 {
		k := r.mapLen()
		if k > maxSeedPerReport {
			r.fail(fmt.Errorf("%d seed entries, limit %d", k, maxSeedPerReport))
		}
		if r.err == nil && k > 0 {
			m.Seed = make([]kv, 0, k)
		}
		for i := 0; i < k && r.err == nil; i++ {
			m.Seed = append(m.Seed, kv{Key: r.str(MaxAddrLen), Val: r.int16()})
		}
	}
	if n > 12 {
		m.SeedAt = r.int()
	}
	if n > 13 {
		switch l := State(r.uint()); {
		case r.err != nil:
		case l == StateOnline: // the default: kept as 0, as a report that leaves it out
		case l == StateJoining || l == StateDraining:
			m.Life = l
		default:
			r.fail(fmt.Errorf("%w: life %d", errType, l))
		}
	}
	if n > 14 {
		m.Digest = r.digest()
	}
	for i := 15; i < n && r.err == nil; i++ { // fields of a later protocol revision
		r.skip(maxValueDepth)
	}
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: report: %v", ErrProtocol, r.err)
	}
	return m, nil
}

// leave is a node's graceful goodbye: [app, addr, inc].
type leave struct {
	App  string
	Addr string
	Inc  uint64
}

func (m *leave) append(b []byte) []byte {
	b = appendArrayLen(b, 3)
	b = appendString(b, m.App)
	b = appendString(b, m.Addr)
	return appendUint(b, m.Inc)
}

func decodeLeave(p []byte) (*leave, error) {
	r := reader{b: p}
	n := r.arrayLen()
	if r.err == nil && n < 3 {
		return nil, fmt.Errorf("%w: leave has %d fields, want 3", ErrProtocol, n)
	}
	m := &leave{App: r.str(MaxAppLen * 4), Addr: r.str(MaxAddrLen), Inc: r.uint()}
	for i := 3; i < n && r.err == nil; i++ {
		r.skip(maxValueDepth)
	}
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: leave: %v", ErrProtocol, r.err)
	}
	return m, nil
}

// Sync flags.
const (
	syncFull     = 1 << 0 // the body is the whole state: replace the view
	syncNeedInfo = 1 << 1 // MARS does not know this node: send full state
	syncMore     = 1 << 2 // more parts of this reply follow
	// (1 << 3 is syncKV, kv_proto.go.)
	// syncBuckets (with syncFull): the body holds only the buckets its
	// buckets field lists (digest.go); the view keeps its other entries.
	syncBuckets = 1 << 4
	// syncWait: MARS is still taking registrations after a restart and
	// cannot yet compare the node's digest; ask again soon.
	syncWait = 1 << 5
)

// nodeRecord is one node as MARS lists it.
type nodeRecord struct {
	Addr     string
	Inc      uint64
	Type     string
	Role     string
	Status   Status
	EndPoint string
	Values   []byte
}

func appendRecord(b []byte, n *nodeRecord) []byte {
	b = appendArrayLen(b, 7)
	b = appendString(b, n.Addr)
	b = appendUint(b, n.Inc)
	b = appendString(b, n.Type)
	b = appendString(b, n.Role)
	b = appendUint(b, uint64(n.Status))
	b = appendString(b, n.EndPoint)
	if len(n.Values) == 0 {
		return appendNil(b)
	}
	return append(b, n.Values...)
}

// syncHead is the fixed part of a sync message.
//
//	[addr, marsInc, flags, part, echo, ack, from, to, nodes?, gone?, keys?, dropped?, states?, goneWhy?, buckets?]
//
// addr is the mesh address the reply is for (several simulated nodes may
// share a transport), echo the seq of the report answered, ack the highest
// seq MARS has seen everything up to. from..to is the version span the body
// covers. The body fields may be left out when empty. buckets, only with
// syncBuckets, is [nb, total, bucket...]: the bucket count of the node's
// digest, the 64-bit digest total of MARS's state at version to (the view
// checks itself against it), and the buckets the body replaces (each part
// lists its own; they add up).
type syncHead struct {
	Addr    string
	MarsInc uint64
	Flags   uint64
	Part    uint64
	Echo    uint64
	Ack     uint64
	From    uint64
	To      uint64
}

// syncBody is the changes a sync carries: nodes added or changed, nodes
// removed (by address), shared keys set, shared keys removed, and the
// membership state of each node in Nodes and why each of Gone went (one
// entry each, in the same order). A MARS of an earlier revision sends no
// states (they follow from Status) and no reasons (removed); a client of an
// earlier revision skips them, so node records keep their seven fields.
type syncBody struct {
	Nodes   []nodeRecord
	Gone    []string
	Keys    []kv
	Dropped []string
	States  []State
	GoneWhy []byte
	NB      int    // with syncBuckets: the bucket count
	Total   uint64 // with syncBuckets: the digest total of MARS's state at To
	Buckets []int  // with syncBuckets: the buckets the body replaces
}

// appendSync writes a sync message; body holds the encoded body fields
// (nodes, gone, keys, dropped arrays) or is empty.
func appendSync(b []byte, h *syncHead, body []byte) []byte {
	return append(appendSyncHead(b, h, len(body) > 0), body...)
}

// appendSyncHead writes the head of a sync whose body (if hasBody) follows.
func appendSyncHead(b []byte, h *syncHead, hasBody bool) []byte {
	n := 8
	switch {
	case hasBody && h.Flags&syncBuckets != 0:
		n = 15 // and the buckets array
	case hasBody:
		n = 14 // the body: the six arrays bodyBuilder writes
	}
	b = appendArrayLen(b, n)
	b = appendString(b, h.Addr)
	b = appendUint(b, h.MarsInc)
	b = appendUint(b, h.Flags)
	b = appendUint(b, h.Part)
	b = appendUint(b, h.Echo)
	b = appendUint(b, h.Ack)
	b = appendUint(b, h.From)
	return appendUint(b, h.To)
}

// decodeSyncHead parses the fixed part and returns a reader positioned at
// the body and the number of body fields.
func decodeSyncHead(p []byte) (syncHead, reader, int, error) {
	var h syncHead
	r := reader{b: p}
	if len(p) > maxSyncSize {
		return h, r, 0, fmt.Errorf("%w: sync of %d bytes, limit %d", ErrProtocol, len(p), maxSyncSize)
	}
	n := r.arrayLen()
	if r.err == nil && n < 8 {
		return h, r, 0, fmt.Errorf("%w: sync has %d fields, want at least 8", ErrProtocol, n)
	}
	h.Addr = r.str(MaxAddrLen)
	h.MarsInc = r.uint()
	h.Flags = r.uint()
	h.Part = r.uint()
	h.Echo = r.uint()
	h.Ack = r.uint()
	h.From = r.uint()
	h.To = r.uint()
	if r.err != nil {
		return h, r, 0, fmt.Errorf("%w: sync: %v", ErrProtocol, r.err)
	}
	return h, r, n - 8, nil
}

// decodeSyncBody reads the body fields into b (appending, so the parts of
// a multi-part sync accumulate).
func decodeSyncBody(r *reader, fields int, b *syncBody) error {
	if fields > 0 {
		k := r.arrayLen()
		for i := 0; i < k && r.err == nil; i++ {
			f := r.arrayLen()
			if r.err == nil && f != 7 {
				r.fail(fmt.Errorf("%w: node record has %d fields", errType, f))
			}
			n := nodeRecord{
				Addr: r.str(MaxAddrLen), Inc: r.uint(), Type: r.str(MaxLabelLen), Role: r.str(MaxLabelLen),
				Status: Status(r.uint()), EndPoint: r.str(MaxAddrLen),
			}
			if v := r.rawValues(MaxValuesSize); v != nil {
				n.Values = append([]byte(nil), v...)
			}
			b.Nodes = append(b.Nodes, n)
		}
	}
	if fields > 1 {
		k := r.arrayLen()
		for i := 0; i < k && r.err == nil; i++ {
			b.Gone = append(b.Gone, r.str(MaxAddrLen))
		}
	}
	if fields > 2 {
		k := r.mapLen()
		for i := 0; i < k && r.err == nil; i++ {
			b.Keys = append(b.Keys, kv{Key: r.str(MaxKeyLen), Val: r.int16()})
		}
	}
	if fields > 3 {
		k := r.arrayLen()
		for i := 0; i < k && r.err == nil; i++ {
			b.Dropped = append(b.Dropped, r.str(MaxKeyLen))
		}
	}
	// States and reasons pair up with this part's records and gones.
	nodes, gone := len(b.Nodes)-len(b.States), len(b.Gone)-len(b.GoneWhy)
	if fields > 4 {
		if k := r.arrayLen(); r.err == nil && k != nodes {
			r.fail(fmt.Errorf("%w: %d states for %d nodes", errType, k, nodes))
		}
		for i := 0; i < nodes && r.err == nil; i++ {
			st := State(r.uint())
			if r.err == nil && !st.live() && st != StateOffline {
				r.fail(fmt.Errorf("%w: node state %d", errType, st))
			}
			b.States = append(b.States, st)
		}
	}
	if fields > 5 {
		if k := r.arrayLen(); r.err == nil && k != gone {
			r.fail(fmt.Errorf("%w: %d reasons for %d gone nodes", errType, k, gone))
		}
		for i := 0; i < gone && r.err == nil; i++ {
			b.GoneWhy = append(b.GoneWhy, byte(r.uint()))
		}
	}
	if fields > 6 {
		k := r.arrayLen()
		if r.err == nil && k < 2 {
			r.fail(fmt.Errorf("%w: buckets field of %d elements", errType, k))
		}
		nb := int(min(r.uint(), 1<<30))
		total := r.uint()
		if r.err == nil && (nb < 1 || nb > maxDigestBuckets || nb&(nb-1) != 0 || b.NB != 0 && (nb != b.NB || total != b.Total)) {
			r.fail(fmt.Errorf("%w: bucket count %d", errType, nb))
		}
		b.NB, b.Total = nb, total
		for i := 2; i < k && r.err == nil; i++ {
			if x := r.uint(); r.err == nil && x >= uint64(nb) {
				r.fail(fmt.Errorf("%w: bucket %d of %d", errType, x, nb))
			} else {
				b.Buckets = append(b.Buckets, int(x))
			}
		}
	}
	for i := 7; i < fields && r.err == nil; i++ {
		r.skip(maxValueDepth)
	}
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return fmt.Errorf("%w: sync body: %v", ErrProtocol, r.err)
	}
	return nil
}

// errorMsg is MARS's refusal: [addr, code, message, echo].
type errorMsg struct {
	Addr    string
	Code    uint64
	Message string
	Echo    uint64
}

func (m *errorMsg) append(b []byte) []byte {
	b = appendArrayLen(b, 4)
	b = appendString(b, m.Addr)
	b = appendUint(b, m.Code)
	msg := m.Message
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	b = appendString(b, msg)
	return appendUint(b, m.Echo)
}

func decodeError(p []byte) (*errorMsg, error) {
	r := reader{b: p}
	n := r.arrayLen()
	if r.err == nil && n < 4 {
		return nil, fmt.Errorf("%w: error has %d fields, want 4", ErrProtocol, n)
	}
	m := &errorMsg{Addr: r.str(MaxAddrLen), Code: r.uint(), Message: r.str(maxMessage), Echo: r.uint()}
	for i := 4; i < n && r.err == nil; i++ {
		r.skip(maxValueDepth)
	}
	if r.err == nil && r.left() != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: error: %v", ErrProtocol, r.err)
	}
	return m, nil
}

// decodeMessage parses any MARS message; it is the fuzzing entry point. It
// never panics and allocates no more than a small multiple of len(p).
func decodeMessage(kind byte, p []byte) (any, error) {
	switch kind {
	case KindReport:
		return decodeReport(p)
	case KindLeave:
		return decodeLeave(p)
	case KindSync:
		h, r, fields, err := decodeSyncHead(p)
		if err != nil {
			return nil, err
		}
		var b syncBody
		if err := decodeSyncBody(&r, fields, &b); err != nil {
			return nil, err
		}
		return &struct {
			syncHead
			syncBody
		}{h, b}, nil
	case KindError:
		return decodeError(p)
	}
	return nil, fmt.Errorf("%w: unknown kind 0x%02x", ErrProtocol, kind)
}
