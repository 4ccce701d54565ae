package mesh_test

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/marsmesh/marsmesh/mesh"
)

// API parity with the Diarkis mesh API (shared/reference/diarkis-mesh-api.txt).
// Each exported function of the reference is assigned to a variable of
// the reference's exact func type, so a missing function or a changed
// signature fails to compile. TestPackPacket is left out on purpose (see
// the package doc); the documented deviations are checked with their own
// types below.
var (
	_ func(commandID uint16, callback func(map[string]interface{}) (map[string]interface{}, error)) = mesh.Command
	_ func(data interface{}) ([]byte, error)                                                        = mesh.CreateReturnBytes
	_ func(data interface{}) ([]byte, error)                                                        = mesh.CreateSendBytes

	_ func(data map[string]interface{}, name string) bool    = mesh.GetBool
	_ func(data map[string]interface{}, name string) []byte  = mesh.GetBytes
	_ func(data map[string]interface{}, name string) float64 = mesh.GetFloat64
	_ func(data map[string]interface{}, name string) int     = mesh.GetInt
	_ func(data map[string]interface{}, name string) int16   = mesh.GetInt16
	_ func(data map[string]interface{}, name string) int32   = mesh.GetInt32
	_ func(data map[string]interface{}, name string) int64   = mesh.GetInt64
	_ func(data map[string]interface{}, name string) int8    = mesh.GetInt8
	_ func(data map[string]interface{}, name string) string  = mesh.GetString
	_ func(data map[string]interface{}, name string) uint16  = mesh.GetUint16
	_ func(data map[string]interface{}, name string) uint32  = mesh.GetUint32
	_ func(data map[string]interface{}, name string) uint64  = mesh.GetUint64
	_ func(data map[string]interface{}, name string) uint8   = mesh.GetUint8

	_ func() string                                                                                    = mesh.GetMyEndPoint
	_ func() string                                                                                    = mesh.GetMyNodeEndPoint
	_ func() string                                                                                    = mesh.GetMyNodeType
	_ func(name string) interface{}                                                                    = mesh.GetMyNodeValue
	_ func(nodeAddr string) *mesh.Node                                                                 = mesh.GetNode
	_ func(endPoint string) *mesh.Node                                                                 = mesh.GetNodeByEndPoint
	_ func(ignoreList []string) []string                                                               = mesh.GetNodeAddresses
	_ func(nRole string) []string                                                                      = mesh.GetNodeAddressesByRole
	_ func(nType string) []string                                                                      = mesh.GetNodeAddressesByType
	_ func(nodeAddr string) string                                                                     = mesh.GetNodeEndPoint
	_ func(publicEndpoint string) string                                                               = mesh.GetNodeMeshEndpoint
	_ func() string                                                                                    = mesh.GetNodeRole
	_ func(addr string) string                                                                         = mesh.GetNodeRoleByAddress
	_ func(nType string) string                                                                        = mesh.GetNodeRoleByType
	_ func() string                                                                                    = mesh.GetNodeType
	_ func(addr string) string                                                                         = mesh.GetNodeTypeByAddress
	_ func() []string                                                                                  = mesh.GetNodeTypes
	_ func(nodeAddr string, name string) interface{}                                                   = mesh.GetNodeValue
	_ func(nodeAddr string) map[string]interface{}                                                     = mesh.GetNodeValues
	_ func() (meshAddrs []string)                                                                      = mesh.GetNodesWithDifferentPublicAddr
	_ func(nType string) string                                                                        = mesh.GetRandomNodeAddressByType
	_ func(key string) (int16, bool)                                                                   = mesh.GetSharedData
	_ func() string                                                                                    = mesh.GetSiblingNodeAddress
	_ func(cmd uint16, cb func(requestData map[string]interface{}) ([]byte, error))                    = mesh.HandleCommand
	_ func(cmd uint16, handler func(data []byte, senderAddr string) (response []byte, err error)) bool = mesh.HandleRPC

	_ func(commandID uint16) bool  = mesh.IsCommandDuplicate
	_ func() bool                  = mesh.IsMyNodeOffline
	_ func() bool                  = mesh.IsMyNodeOnline
	_ func() bool                  = mesh.IsMyNodeTaken
	_ func(nodeAddr string) bool   = mesh.IsNodeOffline
	_ func(nodeAddr string) bool   = mesh.IsNodeOnline
	_ func(nodeAddr string) bool   = mesh.IsNodeTaken
	_ func() bool                  = mesh.IsPartOfCluster
	_ func(err error) bool         = mesh.IsRequestError
	_ func(err error) bool         = mesh.IsRequestTimeoutError
	_ func(err error) bool         = mesh.IsSendError
	_ func(err error) bool         = mesh.IsUnhealthyError
	_ func(cb func())              = mesh.OnInitialSync
	_ func(cb func())              = mesh.OnReady
	_ func(cb func(string))        = mesh.OnSharedDataRemove
	_ func(cb func(string, int16)) = mesh.OnSharedDataUpdate
	_ func(handler func())         = mesh.OnUpdate
	_ func(handler func())         = mesh.OnUpdated
	_ func(cb func(string))        = mesh.RemoveOnSharedDataRemove
	_ func(cb func(string, int16)) = mesh.RemoveOnSharedDataUpdate
	_ func(key string) bool        = mesh.RemoveSharedData

	_ func(commandID uint16, addr string, data interface{}) error                                                          = mesh.Send
	_ func(commandID uint16, addrs []string, data interface{}, limit int) error                                            = mesh.SendMany
	_ func(cmd uint16, addr string, data []byte) ([]byte, error)                                                           = mesh.SendRPC
	_ func(ctx context.Context, cmd uint16, addr string, data []byte) ([]byte, error)                                      = mesh.SendRPCWithContext
	_ func(commandID uint16, addr string, data interface{}, callback func(err error, responseData map[string]interface{})) = mesh.SendRequest
	_ func(name string)                                                                                                    = mesh.SetAppName
	_ func(cb func() bool)                                                                                                 = mesh.SetCheckForShutdownReadiness
	_ func(cmd uint16, cb func(payload []byte, senderAddress string) ([]byte, error))                                      = mesh.SetCommandHandler
	_ func(endPoint string)                                                                                                = mesh.SetEndPoint
	_ func(role string)                                                                                                    = mesh.SetNodeRole
	_ func(_nodeType string)                                                                                               = mesh.SetNodeType
	_ func(name string, val interface{})                                                                                   = mesh.SetNodeValue
	_ func(key string, value int16) bool                                                                                   = mesh.SetSharedData
	_ func(status int)                                                                                                     = mesh.SetStatus
	_ func(commandID uint16, addr string, data interface{}) error                                                          = mesh.USend
	_ func(command uint16, addrs []string, data interface{}, limit int) error                                              = mesh.USendMany
	_ func(data interface{}) bool                                                                                          = mesh.ValidateDataType
	_ func()                                                                                                               = mesh.WaitForLatestNodeData

	// Documented deviations: where the reference returns nothing but the
	// call can fail, an error is returned; Shutdown is new; the reference's
	// util.Parcel is this package's Parcel.
	_ func(confpath string) error = mesh.Setup
	_ func(confpath string) error = mesh.Guest
	_ func(confpath string) error = mesh.StartAsMARS
	_ func() error                = mesh.Shutdown
	_ func() *mesh.Parcel         = mesh.CreateRequestData
)

// Constants: untyped (each is assignable to several types) and with the
// reference's values. The pairs of uint constants only compile when the
// two sides are equal.
var (
	_ int    = mesh.MaxMessageSize
	_ int64  = mesh.MaxMessageSize
	_ uint32 = mesh.MaxMessageSize
	_ int    = mesh.MaxPacketSize
	_ uint16 = mesh.MaxPacketSize
	_ int    = mesh.MaxSize
	_ uint16 = mesh.MaxSize
	_ int    = mesh.Shrink
	_ uint8  = mesh.Shrink
)

type refString string

var (
	_ refString = mesh.DGSRole
	_ refString = mesh.HTTPRole
	_ refString = mesh.TCPRole
	_ refString = mesh.UDPRole
	_ refString = mesh.Update
)

const (
	_ uint = mesh.MaxMessageSize - 10000000
	_ uint = 10000000 - mesh.MaxMessageSize
	_ uint = mesh.MaxPacketSize - 1400
	_ uint = 1400 - mesh.MaxPacketSize
	_ uint = mesh.MaxSize - 1300
	_ uint = 1300 - mesh.MaxSize
	_ uint = mesh.Shrink - 10
	_ uint = 10 - mesh.Shrink
)

// refMsg and refSendData are the reference's types, field for field (and
// tag for tag). Pointer conversion compiles only if the underlying struct
// types are identical apart from tags; the tags are compared at run time.
type refMsg struct {
	UUID      []byte
	Packet    []byte
	AddedSize int
	TTL       int64
	sync.RWMutex
}

type refSendData struct {
	Payload interface{} `json:"payload"`
	Cmd     uint16      `json:"cmd"`
	Limit   int         `json:"limit"`
	Branch  []string    `json:"branch"`
	UBranch []string    `json:"ubranch"`
}

var (
	_ = (*mesh.Msg)((*refMsg)(nil))
	_ = (*mesh.SendData)((*refSendData)(nil))
)

// Node has the reference's fields with their types (it embeds more: the
// live node, see the package doc).
var _ = func(n *mesh.Node) (addr, typ, role string, values map[string]interface{}, self bool) {
	return n.Addr, n.Type, n.Role, n.Values, n.Self
}

var _ = mesh.Node{Addr: "", Type: "", Role: "", Values: map[string]interface{}{}, Self: true}

func TestAPIParityConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want interface{}
	}{
		{"DGSRole", mesh.DGSRole, "DGS"},
		{"HTTPRole", mesh.HTTPRole, "HTTP"},
		{"TCPRole", mesh.TCPRole, "TCP"},
		{"UDPRole", mesh.UDPRole, "UDP"},
		{"Update", mesh.Update, "update"},
		{"MaxMessageSize", mesh.MaxMessageSize, 10000000},
		{"MaxPacketSize", mesh.MaxPacketSize, 1400},
		{"MaxSize", mesh.MaxSize, 1300},
		{"Shrink", mesh.Shrink, 10},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestAPIParityTypes(t *testing.T) {
	same := func(got, want reflect.Type, exported int) {
		t.Helper()
		for i := range want.NumField() {
			w, g := want.Field(i), got.Field(i)
			if g.Name != w.Name || g.Type != w.Type || g.Tag != w.Tag || g.Anonymous != w.Anonymous {
				t.Errorf("%s field %d is %s %v %q, want %s %v %q", got.Name(), i, g.Name, g.Type, g.Tag, w.Name, w.Type, w.Tag)
			}
		}
		if got.NumField() != exported {
			t.Errorf("%s has %d fields, want %d", got.Name(), got.NumField(), exported)
		}
	}
	same(reflect.TypeOf((*mesh.Msg)(nil)).Elem(), reflect.TypeOf((*refMsg)(nil)).Elem(), 5)
	same(reflect.TypeOf(mesh.SendData{}), reflect.TypeOf(refSendData{}), 5)
	type refNode struct {
		Addr   string
		Type   string
		Role   string
		Values map[string]interface{}
		Self   bool
	}
	// Node's first five fields are the reference's; a sixth embeds the
	// live node and is unexported.
	node := reflect.TypeOf(mesh.Node{})
	same(node, reflect.TypeOf(refNode{}), 6)
	if f := node.Field(5); f.IsExported() || !f.Anonymous {
		t.Errorf("Node's sixth field %s is exported or not embedded", f.Name)
	}
}
