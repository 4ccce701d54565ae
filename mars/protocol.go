package mars

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Message kinds. A node has one rudp transport shared by the mesh layer and
// the MARS client; the mesh layer forwards every message whose kind is in
// [KindMin, KindMax] to Client.HandleMessage. Kinds in the range that are
// not defined below are reserved: MARS answers them with an error.
const (
	KindMin byte = 0x40
	// KindReport: node -> MARS. Registration, heartbeat and changes.
	KindReport byte = 0x40
	// KindLeave: node -> MARS. Graceful leave: the node is offline at once.
	KindLeave byte = 0x41
	// KindSync: MARS -> node. What changed since the version the node saw.
	KindSync byte = 0x42
	// KindError: MARS -> node. Why a message was refused.
	KindError byte = 0x43
	KindMax   byte = 0x4F
)

// IsMarsKind reports whether a message kind belongs to MARS.
func IsMarsKind(k byte) bool { return k >= KindMin && k <= KindMax }

// Limits. Every one of them is checked on both sides: the client refuses
// bad input before it sends anything, and MARS refuses it again.
const (
	// MaxKeyLen is the longest shared-data key in bytes (keys are 1..54 bytes).
	MaxKeyLen = 54
	// MaxAppLen is the longest app name in bytes. App names are printable
	// UTF-8 (no control characters); "" is the default namespace.
	MaxAppLen = 64
	// MaxAddrLen bounds a mesh address and a public endpoint.
	MaxAddrLen = 255
	// MaxLabelLen bounds a node type and a node role.
	MaxLabelLen = 64
	// MaxValuesSize bounds the encoded metadata values of one node.
	MaxValuesSize = 64 << 10
	// MaxReportSize bounds one message a node sends to MARS.
	MaxReportSize = 1 << 20
	// maxOpsPerReport and maxSeedPerReport bound the shared-data entries in
	// one report; a client splits larger batches over several reports.
	maxOpsPerReport  = 4096
	maxSeedPerReport = 8192
	// syncPartSize is the body size at which MARS starts a new part of a
	// sync reply; parts are applied together when the last one arrives.
	syncPartSize = 512 << 10
	// maxSyncSize bounds one sync message a client accepts.
	maxSyncSize = 8 << 20
	// maxMessage bounds error texts.
	maxMessage = 512
	// protoVersion is the first element of every report.
	protoVersion = 1
)

// Status is a node's state as MARS lists it.
type Status int

// Node statuses, numbered as in the mesh API.
const (
	StatusOnline  Status = 1
	StatusOffline Status = 2
	StatusTaken   Status = 3
)

func (s Status) String() string {
	switch s {
	case StatusOnline:
		return "online"
	case StatusOffline:
		return "offline"
	case StatusTaken:
		return "taken"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

func (s Status) valid() bool { return s >= StatusOnline && s <= StatusTaken }

// Error codes carried by KindError messages.
const (
	CodeBadMessage = 1 // malformed, truncated or oversized message, unknown kind
	CodeBadApp     = 2 // app name empty where required, too long, or not printable
	CodeBadKey     = 3 // shared-data key empty or longer than MaxKeyLen
	CodeBadNode    = 4 // node address, type, role, status, endpoint or values refused
	CodeLimit      = 5 // a MARS limit (apps, nodes, shared keys) is reached
	CodeSuperseded = 6 // a newer incarnation owns this mesh address
	CodeBusy       = 7 // MARS dropped the message under load; it will be retried
)

// Sentinel errors of this package; every error it returns wraps one of them.
var (
	ErrBadKey   = errors.New("mars: invalid shared data key")
	ErrBadApp   = errors.New("mars: invalid app name")
	ErrBadNode  = errors.New("mars: invalid node info")
	ErrLimit    = errors.New("mars: limit reached")
	ErrClosed   = errors.New("mars: closed")
	ErrTimeout  = errors.New("mars: timed out")
	ErrProtocol = errors.New("mars: malformed message")
	ErrRemote   = errors.New("mars: refused by MARS")
	// ErrBadOptions: ServerOptions.Validate refused the options.
	ErrBadOptions = errors.New("mars: invalid server options")
)

// RemoteError is an error MARS reported back to a node.
type RemoteError struct {
	Code    int
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("mars: refused by MARS (code %d): %s", e.Code, e.Message)
}

// Unwrap lets errors.Is(err, ErrRemote) match.
func (e *RemoteError) Unwrap() error { return ErrRemote }

// CheckKey returns an error wrapping ErrBadKey unless key is 1..MaxKeyLen bytes.
func CheckKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, want 1..%d", ErrBadKey, len(key), MaxKeyLen)
	}
	return nil
}

// CheckApp returns an error wrapping ErrBadApp unless app is at most
// MaxAppLen bytes of printable UTF-8. The empty name is the default
// namespace and is valid here (a server may still require a name).
func CheckApp(app string) error {
	if len(app) > MaxAppLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadApp, len(app), MaxAppLen)
	}
	if !utf8.ValidString(app) {
		return fmt.Errorf("%w: not UTF-8", ErrBadApp)
	}
	for _, c := range app {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("%w: %q holds a non-printable character", ErrBadApp, app)
		}
	}
	return nil
}

// checkLabel validates a node type or role.
func checkLabel(what, s string) error {
	if len(s) > MaxLabelLen {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrBadNode, what, len(s), MaxLabelLen)
	}
	return nil
}

// checkAddr validates a mesh address or public endpoint (free-form text,
// usually host:port).
func checkAddr(what, s string, required bool) error {
	if required && s == "" {
		return fmt.Errorf("%w: empty %s", ErrBadNode, what)
	}
	if len(s) > MaxAddrLen {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrBadNode, what, len(s), MaxAddrLen)
	}
	return nil
}

// nodeInfo is what a node says about itself.
type nodeInfo struct {
	Type, Role string
	Status     Status
	EndPoint   string
	Values     []byte // msgpack map with string keys, or nil
}

func (i *nodeInfo) check() error {
	if err := checkLabel("type", i.Type); err != nil {
		return err
	}
	if err := checkLabel("role", i.Role); err != nil {
		return err
	}
	if !i.Status.valid() {
		return fmt.Errorf("%w: status %d", ErrBadNode, i.Status)
	}
	if err := checkAddr("endpoint", i.EndPoint, false); err != nil {
		return err
	}
	if len(i.Values) > MaxValuesSize {
		return fmt.Errorf("%w: values of %d bytes, limit %d", ErrBadNode, len(i.Values), MaxValuesSize)
	}
	return nil
}

func (i *nodeInfo) equal(o *nodeInfo) bool {
	return i.Type == o.Type && i.Role == o.Role && i.Status == o.Status &&
		i.EndPoint == o.EndPoint && string(i.Values) == string(o.Values)
}

// op is one shared-data change made by a node: set Key to Val, add Val to
// it (Add; int16 arithmetic wraps, a missing key counts as 0), or remove it.
type op struct {
	Seq uint64
	Key string
	Val int16
	Del bool
	Add bool
}

// kv is one shared-data entry.
type kv struct {
	Key string
	Val int16
}
