package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// The package-level API works on a default node made by Setup (or Guest).
// Handlers registered before Setup are kept and apply to it; so do the
// node settings (SetNodeType, SetNodeValue, ...) and callbacks (OnReady,
// OnSharedDataUpdate, ...) made before Setup. Before Setup, lookups return
// zero values and senders fail with ErrNotSetup.

var (
	defMu    sync.RWMutex
	def      *Node
	marsSrv  *mars.Server
	pre      = newRegistry()
	preOpts  []Option
	preHooks []func(*Node)
)

// Default returns the node Setup or Guest made, or nil.
func Default() *Node {
	defMu.RLock()
	defer defMu.RUnlock()
	return def
}

// Setup loads the configuration (an empty path means defaults plus
// DIARKIS_* environment variables), binds the node's UDP port, starts
// syncing with MARS and returns: once the first sync is done, or after a
// second if MARS does not answer (the node keeps trying). OnReady and
// OnInitialSync callbacks fire after the first sync. It logs a warning
// (with a did-you-mean) for every DIARKIS_* variable no key reads.
func Setup(confpath string) error { return setup(confpath) }

// Guest is Setup for a node that can send and receive but is never listed.
func Guest(confpath string) error { return setup(confpath, AsGuest()) }

func setup(confpath string, extra ...Option) error {
	cfg, err := config.Load(confpath)
	if err != nil {
		return err
	}
	defMu.Lock()
	if def != nil {
		defMu.Unlock()
		return errors.New("mesh: already set up (call Shutdown first)")
	}
	opts := append(append(append([]Option(nil), preOpts...), extra...), withRegistry(pre))
	n, err := New(cfg, opts...)
	if err != nil {
		defMu.Unlock()
		return err
	}
	hooks := preHooks
	preOpts, preHooks = nil, nil
	def = n
	defMu.Unlock()
	for _, w := range config.UnknownEnv(os.Environ()) { // DIARKIS_* names no key reads
		n.log.Warn("mesh: " + w)
	}
	// Outside the lock: a hook may run a callback at once (OnReady after
	// the first sync), and the callback may call package-level functions.
	for _, h := range hooks {
		h(n)
	}
	// Give the first sync a moment, so a call right after Setup finds the
	// node part of the cluster; without MARS, Setup returns anyway.
	select {
	case <-n.Ready():
	case <-time.After(setupSyncWait):
	}
	return nil
}

// setupSyncWait bounds how long Setup and Guest wait for the first sync.
const setupSyncWait = time.Second

func withRegistry(r *registry) Option { return func(o *options) { o.handlers = r } }

// StartAsMARS starts a MARS registry server inside this process, listening
// at marsAddress:marsPort of the configuration, with its cluster keys.
// Shutdown stops it.
func StartAsMARS(confpath string) error {
	cfg, err := config.Load(confpath)
	if err != nil {
		return err
	}
	defMu.Lock()
	defer defMu.Unlock()
	if marsSrv != nil {
		return errors.New("mesh: MARS already started in this process")
	}
	keys, err := cfg.Keys()
	if err != nil {
		return err
	}
	srv, err := mars.Listen(cfg.MarsAddr(), mars.ServerOptions{Transport: rudp.Config{Keys: keys}})
	if err != nil {
		return fmt.Errorf("mesh: start MARS: %w", err)
	}
	if unauthenticated(keys, srv.Addr()) {
		slog.Default().Warn(unauthenticatedWarning, "addr", srv.Addr().String())
	}
	marsSrv = srv
	return nil
}

// Shutdown shuts the default node down (see Node.ShutdownContext) and
// stops a MARS started by StartAsMARS. It is safe to call more than once;
// Setup may be called again afterwards.
func Shutdown() error { return ShutdownContext(context.Background()) }

// beforeSetup records a setting for the node Setup will make and returns
// nil, or returns the default node if there is one (the caller applies the
// setting to it; looking it up again could find it shut down and gone).
func beforeSetup(o Option, h func(*Node)) *Node {
	defMu.Lock()
	defer defMu.Unlock()
	if def != nil {
		return def
	}
	if o != nil {
		preOpts = append(preOpts, o)
	}
	if h != nil {
		preHooks = append(preHooks, h)
	}
	return nil
}

// withDefault runs f on the default node, or records it for Setup.
func withDefault(f func(*Node)) {
	if n := Default(); n != nil {
		f(n)
		return
	}
	if n := beforeSetup(nil, f); n != nil {
		f(n)
	}
}

var errNotSetupSend = fmt.Errorf("%w: %w", ErrSend, ErrNotSetup)

// HandleRPC adds a handler SendRPC reaches with command ID cmd on the
// default node (see Node.HandleRPC); it returns true.
func HandleRPC(cmd uint16, handler func(data []byte, senderAddr string) (response []byte, err error)) bool {
	return pre.addRPC(cmd, rpcHandler{plain: handler})
}

// HandleRPCWithContext is HandleRPC for a handler that takes a context.
func HandleRPCWithContext(cmd uint16, handler func(ctx context.Context, data []byte, senderAddr string) ([]byte, error)) bool {
	return pre.addRPC(cmd, rpcHandler{ctx: handler})
}

// HandleCommand adds a handler of command ID cmd (see Node.HandleCommand).
func HandleCommand(cmd uint16, cb func(requestData map[string]interface{}) ([]byte, error)) {
	pre.addCmd(cmd, cmdHandler{decoded: cb})
}

// SetCommandHandler adds a raw-bytes handler of command ID cmd.
func SetCommandHandler(cmd uint16, cb func(payload []byte, senderAddress string) ([]byte, error)) {
	pre.addCmd(cmd, cmdHandler{raw: cb})
}

// Command sets a handler of command ID cmd that returns a map.
//
// Deprecated: use HandleCommand.
func Command(commandID uint16, callback func(map[string]interface{}) (map[string]interface{}, error)) {
	HandleCommand(commandID, func(req map[string]interface{}) ([]byte, error) {
		resp, err := callback(req)
		if err != nil {
			return nil, err
		}
		return CreateReturnBytes(resp)
	})
}

// IsCommandDuplicate reports whether commandID has more than one handler
// (see Node.IsCommandDuplicate).
func IsCommandDuplicate(commandID uint16) bool { return pre.isDup(commandID) }

// Send sends a reliable one-way message from the default node.
func Send(commandID uint16, addr string, data interface{}) error {
	if n := Default(); n != nil {
		return n.Send(commandID, addr, data)
	}
	return errNotSetupSend
}

// USend sends an unreliable one-way message from the default node.
func USend(commandID uint16, addr string, data interface{}) error {
	if n := Default(); n != nil {
		return n.USend(commandID, addr, data)
	}
	return errNotSetupSend
}

// SendMany fans a reliable message out from the default node.
func SendMany(commandID uint16, addrs []string, data interface{}, limit int) error {
	if n := Default(); n != nil {
		return n.SendMany(commandID, addrs, data, limit)
	}
	return errNotSetupSend
}

// USendMany fans an unreliable message out from the default node.
func USendMany(command uint16, addrs []string, data interface{}, limit int) error {
	if n := Default(); n != nil {
		return n.USendMany(command, addrs, data, limit)
	}
	return errNotSetupSend
}

// SendRPC sends an RPC from the default node with DefaultRPCTimeout.
func SendRPC(cmd uint16, addr string, data []byte) ([]byte, error) {
	if n := Default(); n != nil {
		return n.SendRPC(cmd, addr, data)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup)
}

// SendRPCWithContext sends an RPC from the default node.
func SendRPCWithContext(ctx context.Context, cmd uint16, addr string, data []byte) ([]byte, error) {
	if n := Default(); n != nil {
		return n.SendRPCWithContext(ctx, cmd, addr, data)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup)
}

// SendRequest sends a request from the default node; see Node.SendRequest.
func SendRequest(commandID uint16, addr string, data interface{}, callback func(err error, responseData map[string]interface{})) {
	if n := Default(); n != nil {
		n.SendRequest(commandID, addr, data, callback)
		return
	}
	if callback != nil {
		go callback(fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup), nil) // on its own goroutine, as always
	}
}

// OnSendFailure registers a callback for every peer a send of the default
// node could not reach.
func OnSendFailure(cb func(addr string, err error)) {
	withDefault(func(n *Node) { n.OnSendFailure(cb) })
}

// OnReady registers a callback run when the default node has synced.
func OnReady(cb func()) { withDefault(func(n *Node) { n.OnReady(cb) }) }

// OnInitialSync registers a callback run after the default node's first sync.
func OnInitialSync(cb func()) { withDefault(func(n *Node) { n.OnInitialSync(cb) }) }

// OnUpdate registers a callback run before each sync is applied.
func OnUpdate(handler func()) { withDefault(func(n *Node) { n.OnUpdate(handler) }) }

// OnUpdated registers a callback run after each sync is applied.
func OnUpdated(handler func()) { withDefault(func(n *Node) { n.OnUpdated(handler) }) }

// OnSharedDataUpdate registers a callback for shared data set anywhere.
func OnSharedDataUpdate(cb func(string, int16)) {
	withDefault(func(n *Node) { n.OnSharedDataUpdate(cb) })
}

// OnSharedDataRemove registers a callback for shared data removed anywhere.
func OnSharedDataRemove(cb func(string)) { withDefault(func(n *Node) { n.OnSharedDataRemove(cb) }) }

// RemoveOnSharedDataUpdate removes a callback given to OnSharedDataUpdate.
func RemoveOnSharedDataUpdate(cb func(string, int16)) {
	withDefault(func(n *Node) { n.RemoveOnSharedDataUpdate(cb) })
}

// RemoveOnSharedDataRemove removes a callback given to OnSharedDataRemove.
func RemoveOnSharedDataRemove(cb func(string)) {
	withDefault(func(n *Node) { n.RemoveOnSharedDataRemove(cb) })
}

// SetCheckForShutdownReadiness sets what Shutdown polls before it closes.
func SetCheckForShutdownReadiness(cb func() bool) {
	withDefault(func(n *Node) { n.SetCheckForShutdownReadiness(cb) })
}

// SetNodeType sets the default node's type (before Setup: its initial type).
func SetNodeType(nodeType string) {
	if n := beforeSetup(WithType(nodeType), nil); n != nil {
		n.SetNodeType(nodeType)
	}
}

// SetNodeRole sets the default node's role.
func SetNodeRole(role string) {
	if n := beforeSetup(WithRole(role), nil); n != nil {
		n.SetNodeRole(role)
	}
}

// SetEndPoint sets the default node's public endpoint.
func SetEndPoint(endPoint string) {
	if n := beforeSetup(WithEndPoint(endPoint), nil); n != nil {
		n.SetEndPoint(endPoint)
	}
}

// SetAppName sets the default node's app name (MARS namespace).
func SetAppName(name string) {
	if n := beforeSetup(WithApp(name), nil); n != nil {
		n.SetAppName(name)
	}
}

// SetNodeValue sets one of the default node's metadata values.
func SetNodeValue(name string, val interface{}) {
	withDefault(func(n *Node) { n.SetNodeValue(name, val) })
}

// SetStatus sets the default node's status (StatusOnline, StatusOffline, StatusTaken).
func SetStatus(status int) { withDefault(func(n *Node) { n.SetStatus(status) }) }

// SetSharedData sets a shared counter cluster-wide from the default node.
func SetSharedData(key string, value int16) bool {
	if n := Default(); n != nil {
		return n.SetSharedData(key, value)
	}
	return false
}

// AddSharedData adds delta to a shared counter cluster-wide from the
// default node (see Node.AddSharedData).
func AddSharedData(key string, delta int16) bool {
	if n := Default(); n != nil {
		return n.AddSharedData(key, delta)
	}
	return false
}

// RemoveSharedData removes a shared counter cluster-wide.
func RemoveSharedData(key string) bool {
	if n := Default(); n != nil {
		return n.RemoveSharedData(key)
	}
	return false
}

// GetSharedData returns a shared counter from the default node's view.
func GetSharedData(key string) (int16, bool) {
	if n := Default(); n != nil {
		return n.GetSharedData(key)
	}
	return 0, false
}

// IsPartOfCluster reports whether the default node is healthy: synced with
// MARS at least once and not shut down (see Node.IsPartOfCluster).
func IsPartOfCluster() bool {
	n := Default()
	return n != nil && n.IsPartOfCluster()
}

// WaitForLatestNodeData waits for two more syncs of the default node.
func WaitForLatestNodeData() {
	if n := Default(); n != nil {
		n.WaitForLatestNodeData()
	}
}

// lookup answers f from the default node, or the zero value before Setup.
func lookup[T any](f func(*Node) T) T {
	if n := Default(); n != nil {
		return f(n)
	}
	var zero T
	return zero
}

// GetNode returns the record of the node at a mesh address, or nil.
func GetNode(nodeAddr string) *Node {
	return lookup(func(n *Node) *Node { return n.GetNode(nodeAddr) })
}

// GetNodeByEndPoint returns the record of the node with a public endpoint, or nil.
func GetNodeByEndPoint(endPoint string) *Node {
	return lookup(func(n *Node) *Node { return n.GetNodeByEndPoint(endPoint) })
}

// GetNodeAddresses returns the online nodes' mesh addresses but those
// ignored (see Node.GetNodeAddresses).
func GetNodeAddresses(ignoreList []string) []string {
	return lookup(func(n *Node) []string { return n.GetNodeAddresses(ignoreList) })
}

// GetNodeAddressesByType returns the mesh addresses of the online nodes of
// a type: a list to send to (see Node.GetNodeAddressesByType).
func GetNodeAddressesByType(nType string) []string {
	return lookup(func(n *Node) []string { return n.GetNodeAddressesByType(nType) })
}

// GetNodeAddressesByRole returns the mesh addresses of the online nodes of
// a role.
func GetNodeAddressesByRole(nRole string) []string {
	return lookup(func(n *Node) []string { return n.GetNodeAddressesByRole(nRole) })
}

// GetAllNodeAddresses returns every listed node's mesh address, in any
// membership state, but those ignored.
func GetAllNodeAddresses(ignoreList []string) []string {
	return lookup(func(n *Node) []string { return n.GetAllNodeAddresses(ignoreList) })
}

// GetAllNodeAddressesByType returns the mesh addresses of the listed nodes
// of a type, in any membership state.
func GetAllNodeAddressesByType(nType string) []string {
	return lookup(func(n *Node) []string { return n.GetAllNodeAddressesByType(nType) })
}

// GetAllNodeAddressesByRole returns the mesh addresses of the listed nodes
// of a role, in any membership state.
func GetAllNodeAddressesByRole(nRole string) []string {
	return lookup(func(n *Node) []string { return n.GetAllNodeAddressesByRole(nRole) })
}

// GetNodeState returns the membership state of the node at a mesh address
// (see Node.NodeState).
func GetNodeState(nodeAddr string) NodeState {
	return lookup(func(n *Node) NodeState { return n.NodeState(nodeAddr) })
}

// OnNodeEvent registers a callback for the default node's membership
// events (see Node.OnNodeEvent); registered before Setup, it applies to the
// node Setup makes.
func OnNodeEvent(cb func(NodeEvent)) { withDefault(func(n *Node) { n.OnNodeEvent(cb) }) }

// GetNodeTypes returns every node type in the cluster.
func GetNodeTypes() []string { return lookup((*Node).GetNodeTypes) }

// GetNodeEndPoint returns the public endpoint of the node at a mesh address.
func GetNodeEndPoint(nodeAddr string) string {
	return lookup(func(n *Node) string { return n.GetNodeEndPoint(nodeAddr) })
}

// GetNodeMeshEndpoint returns the mesh address of the node with a public endpoint.
func GetNodeMeshEndpoint(publicEndpoint string) string {
	return lookup(func(n *Node) string { return n.GetNodeMeshEndpoint(publicEndpoint) })
}

// GetNodeRoleByAddress returns the role of the node at a mesh address.
func GetNodeRoleByAddress(addr string) string {
	return lookup(func(n *Node) string { return n.GetNodeRoleByAddress(addr) })
}

// GetNodeTypeByAddress returns the type of the node at a mesh address.
func GetNodeTypeByAddress(addr string) string {
	return lookup(func(n *Node) string { return n.GetNodeTypeByAddress(addr) })
}

// GetNodeRoleByType returns the role of the nodes of a type.
func GetNodeRoleByType(nType string) string {
	return lookup(func(n *Node) string { return n.GetNodeRoleByType(nType) })
}

// GetNodeValue returns one metadata value of the node at a mesh address.
func GetNodeValue(nodeAddr string, name string) interface{} {
	return lookup(func(n *Node) interface{} { return n.GetNodeValue(nodeAddr, name) })
}

// GetNodeValues returns the metadata values of the node at a mesh address.
func GetNodeValues(nodeAddr string) map[string]interface{} {
	return lookup(func(n *Node) map[string]interface{} { return n.GetNodeValues(nodeAddr) })
}

// GetNodesWithDifferentPublicAddr returns the nodes whose public host differs.
func GetNodesWithDifferentPublicAddr() (meshAddrs []string) {
	return lookup((*Node).GetNodesWithDifferentPublicAddr)
}

// GetRandomNodeAddressByType returns a random online node of a type, or "".
func GetRandomNodeAddressByType(nType string) string {
	return lookup(func(n *Node) string { return n.GetRandomNodeAddressByType(nType) })
}

// GetSiblingNodeAddress returns a random online node of the default node's type.
func GetSiblingNodeAddress() string { return lookup((*Node).GetSiblingNodeAddress) }

// IsNodeOnline reports whether the node at a mesh address is listed online.
func IsNodeOnline(nodeAddr string) bool {
	return lookup(func(n *Node) bool { return n.IsNodeOnline(nodeAddr) })
}

// IsNodeOffline reports whether the node at a mesh address is listed offline.
func IsNodeOffline(nodeAddr string) bool {
	return lookup(func(n *Node) bool { return n.IsNodeOffline(nodeAddr) })
}

// IsNodeTaken reports whether the node at a mesh address is listed taken.
func IsNodeTaken(nodeAddr string) bool {
	return lookup(func(n *Node) bool { return n.IsNodeTaken(nodeAddr) })
}

// IsMyNodeOnline reports whether the default node's status is online.
func IsMyNodeOnline() bool { return lookup((*Node).IsMyNodeOnline) }

// IsMyNodeOffline reports whether the default node's status is offline.
func IsMyNodeOffline() bool { return lookup((*Node).IsMyNodeOffline) }

// IsMyNodeTaken reports whether the default node's status is taken.
func IsMyNodeTaken() bool { return lookup((*Node).IsMyNodeTaken) }

// GetMyEndPoint returns the default node's mesh address.
func GetMyEndPoint() string { return lookup((*Node).GetMyEndPoint) }

// GetMyNodeEndPoint returns the default node's public endpoint.
func GetMyNodeEndPoint() string { return lookup((*Node).GetMyNodeEndPoint) }

// GetMyNodeType returns the default node's type.
func GetMyNodeType() string { return lookup((*Node).GetMyNodeType) }

// GetNodeType returns the default node's type.
func GetNodeType() string { return lookup((*Node).GetNodeType) }

// GetNodeRole returns the default node's role.
func GetNodeRole() string { return lookup((*Node).GetNodeRole) }

// GetMyNodeValue returns one of the default node's metadata values.
func GetMyNodeValue(name string) interface{} {
	return lookup(func(n *Node) interface{} { return n.GetMyNodeValue(name) })
}
