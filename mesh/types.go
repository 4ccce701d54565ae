package mesh

import (
	"sync"

	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// Node roles.
const (
	DGSRole  = "DGS"
	HTTPRole = "HTTP"
	TCPRole  = "TCP"
	UDPRole  = "UDP"
)

// Sizes, as in the reference API.
const (
	// MaxMessageSize is the largest message payload in bytes (10 MB).
	MaxMessageSize = rudp.MaxMessageSize
	// MaxPacketSize is the largest UDP payload the mesh puts on the wire.
	MaxPacketSize = rudp.MaxPacketSize
	// MaxSize is the size above which an unreliable message is split.
	MaxSize = rudp.MaxSize
	// Shrink is kept for API compatibility; the mesh has no message map to shrink.
	Shrink = 10
)

// Update is the name of the event fired before a sync is applied (OnUpdate).
const Update = "update"

// Node statuses for SetStatus.
const (
	StatusOnline  = int(mars.StatusOnline)
	StatusOffline = int(mars.StatusOffline)
	StatusTaken   = int(mars.StatusTaken)
)

// Msg is the reference API's split-message record. The mesh splits and
// reassembles messages inside rudp and never hands a Msg out; the type is
// kept so code written against the reference compiles.
type Msg struct {
	UUID      []byte
	Packet    []byte
	AddedSize int
	TTL       int64
	sync.RWMutex
}

// SendData is the reference API's internal fan-out envelope, kept for
// compatibility; fan-out frames are binary (see SendMany).
type SendData struct {
	Payload interface{} `json:"payload"`
	Cmd     uint16      `json:"cmd"`
	Limit   int         `json:"limit"`
	Branch  []string    `json:"branch"`
	UBranch []string    `json:"ubranch"`
}
