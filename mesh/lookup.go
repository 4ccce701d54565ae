package mesh

import (
	"math/rand/v2"
	"net"

	"github.com/marsmesh/marsmesh/mars"
)

// Lookups answer from the node's local view of the cluster, kept in sync
// with MARS about every second: no network call, at most about two seconds
// old while MARS is reachable, and stale but usable while it is not (see
// IsPartOfCluster).

// IsPartOfCluster reports whether the node is healthy: it has synced with
// MARS at least once and has not been shut down. A MARS outage does not
// change it: the node keeps its last view and keeps serving sends, RPCs and
// fan-out (dead peers are still found by the transport's retryTimeout).
// Requests are refused (IsUnhealthyError) only while it is false. To ask
// whether MARS answered recently, use InTouchWithMars.
func (n *Node) IsPartOfCluster() bool {
	if n.life.closed.Load() {
		return false
	}
	select {
	case <-n.mc.Ready():
		return true
	default:
		return false
	}
}

// InTouchWithMars reports whether MARS answered within the last three
// sync intervals (what `node healthcheck -ready` asks).
func (n *Node) InTouchWithMars() bool { return n.mc.InTouch() }

// WaitForLatestNodeData waits until two more syncs with MARS have been
// applied (bounded), so changes made across the cluster at about the same
// moment (a mass restart) are in the view.
func (n *Node) WaitForLatestNodeData() { n.mc.WaitForLatestNodeData() }

func record(m mars.Node) *Node {
	return &Node{Addr: m.Addr, Type: m.Type, Role: m.Role, Values: m.Values, Self: m.Self}
}

// GetNode returns the record of the node at a mesh address, or nil.
func (n *Node) GetNode(nodeAddr string) *Node {
	if m, ok := n.mc.View().Node(nodeAddr); ok {
		return record(m)
	}
	return nil
}

// GetNodeByEndPoint returns the record of the node with a public endpoint, or nil.
func (n *Node) GetNodeByEndPoint(endPoint string) *Node {
	if m, ok := n.mc.View().NodeByEndPoint(endPoint); ok {
		return record(m)
	}
	return nil
}

// GetNodeAddresses returns the mesh addresses of the online nodes (this one
// included, when online), except those in ignoreList: a list to send to.
// Joining, draining and offline nodes are left out (GetAllNodeAddresses
// lists them too).
func (n *Node) GetNodeAddresses(ignoreList []string) []string {
	return n.mc.View().Online(ignoreList...)
}

// GetNodeAddressesByType returns the mesh addresses of the online nodes of
// a type: a list to send to (SendMany, SendRPC to one of them). Joining,
// draining and offline nodes are left out (GetAllNodeAddressesByType lists
// them too).
func (n *Node) GetNodeAddressesByType(nType string) []string {
	return n.mc.View().OnlineByType(nType)
}

// GetNodeAddressesByRole returns the mesh addresses of the online nodes of
// a role (see GetNodeAddressesByType).
func (n *Node) GetNodeAddressesByRole(nRole string) []string {
	return n.mc.View().OnlineByRole(nRole)
}

// GetAllNodeAddresses returns the mesh addresses of every listed node, in
// any membership state (see NodeState), except those in ignoreList.
func (n *Node) GetAllNodeAddresses(ignoreList []string) []string {
	return n.mc.View().Addrs(ignoreList...)
}

// GetAllNodeAddressesByType returns the mesh addresses of the listed nodes
// of a type, in any membership state.
func (n *Node) GetAllNodeAddressesByType(nType string) []string {
	return n.mc.View().AddrsByType(nType)
}

// GetAllNodeAddressesByRole returns the mesh addresses of the listed nodes
// of a role, in any membership state.
func (n *Node) GetAllNodeAddressesByRole(nRole string) []string {
	return n.mc.View().AddrsByRole(nRole)
}

// GetNodeTypes returns every node type in the cluster.
func (n *Node) GetNodeTypes() []string { return n.mc.View().Types() }

// GetNodeEndPoint returns the public endpoint of the node at a mesh address.
func (n *Node) GetNodeEndPoint(nodeAddr string) string {
	m, _ := n.mc.View().Node(nodeAddr)
	return m.EndPoint
}

// GetNodeMeshEndpoint returns the mesh address of the node with a public endpoint.
func (n *Node) GetNodeMeshEndpoint(publicEndpoint string) string {
	m, _ := n.mc.View().NodeByEndPoint(publicEndpoint)
	return m.Addr
}

// GetNodeRoleByAddress returns the role of the node at a mesh address.
func (n *Node) GetNodeRoleByAddress(addr string) string {
	m, _ := n.mc.View().Node(addr)
	return m.Role
}

// GetNodeTypeByAddress returns the type of the node at a mesh address.
func (n *Node) GetNodeTypeByAddress(addr string) string {
	m, _ := n.mc.View().Node(addr)
	return m.Type
}

// GetNodeRoleByType returns the role of the nodes of a type.
func (n *Node) GetNodeRoleByType(nType string) string {
	v := n.mc.View()
	for _, a := range v.AddrsByType(nType) {
		if m, ok := v.Node(a); ok && m.Role != "" {
			return m.Role
		}
	}
	return ""
}

// GetNodeValue returns one metadata value of the node at a mesh address.
// Values read back with one Go type per kind, whichever node set them and
// whatever their size: every integer as int64 (uint64 only above
// math.MaxInt64), every float as float64, strings and binary as string,
// bools as bool, lists as []interface{}, maps as map[string]interface{}
// (the same rules inside). So `v.(int64)` works for any integer value. A
// list or map value is shared: do not modify it.
func (n *Node) GetNodeValue(nodeAddr, name string) interface{} {
	v, _ := n.mc.View().NodeValue(nodeAddr, name)
	return v
}

// GetNodeValues returns the metadata values of the node at a mesh address
// (a copy of the map; types as GetNodeValue says).
func (n *Node) GetNodeValues(nodeAddr string) map[string]interface{} {
	m, _ := n.mc.View().Node(nodeAddr)
	return m.Values
}

// GetNodesWithDifferentPublicAddr returns the mesh addresses of the nodes
// whose public endpoint's host differs from this node's.
func (n *Node) GetNodesWithDifferentPublicAddr() (meshAddrs []string) {
	mine := host(n.mc.Self().EndPoint)
	for _, m := range n.mc.View().Nodes() {
		if !m.Self && host(m.EndPoint) != mine {
			meshAddrs = append(meshAddrs, m.Addr)
		}
	}
	return meshAddrs
}

func host(endPoint string) string {
	if h, _, err := net.SplitHostPort(endPoint); err == nil {
		return h
	}
	return endPoint
}

// GetRandomNodeAddressByType returns the mesh address of a random node of
// a type that is online (NodeState) with status StatusOnline, or "" if
// there is none.
func (n *Node) GetRandomNodeAddressByType(nType string) string {
	return n.randomOnline(nType, false)
}

// GetSiblingNodeAddress returns the mesh address of a random online node of
// this node's type other than itself, or "".
func (n *Node) GetSiblingNodeAddress() string {
	return n.randomOnline(n.mc.Self().Type, true)
}

func (n *Node) randomOnline(nType string, notSelf bool) string {
	v := n.mc.View()
	var online []string
	for _, a := range v.OnlineByType(nType) {
		if m, ok := v.Node(a); ok && m.Status == mars.StatusOnline && !(notSelf && m.Self) {
			online = append(online, a)
		}
	}
	if len(online) == 0 {
		return ""
	}
	return online[rand.IntN(len(online))]
}

func (n *Node) statusOf(addr string) mars.Status {
	m, _ := n.mc.View().Node(addr)
	return m.Status
}

// IsNodeOnline reports whether the node at a mesh address has the status
// StatusOnline (the Diarkis status a node sets; StatusOffline also while it
// is silent). For its membership state, see NodeState.
func (n *Node) IsNodeOnline(nodeAddr string) bool { return n.statusOf(nodeAddr) == mars.StatusOnline }

// IsNodeOffline reports whether the node at a mesh address is listed offline.
func (n *Node) IsNodeOffline(nodeAddr string) bool {
	return n.statusOf(nodeAddr) == mars.StatusOffline
}

// IsNodeTaken reports whether the node at a mesh address is listed taken.
func (n *Node) IsNodeTaken(nodeAddr string) bool { return n.statusOf(nodeAddr) == mars.StatusTaken }

// IsMyNodeOnline reports whether this node's status is online (a node
// that was shut down is not).
func (n *Node) IsMyNodeOnline() bool {
	return !n.life.closed.Load() && n.mc.Self().Status == mars.StatusOnline
}

// IsMyNodeOffline reports whether this node's status is offline, or the
// node was shut down.
func (n *Node) IsMyNodeOffline() bool {
	return n.life.closed.Load() || n.mc.Self().Status == mars.StatusOffline
}

// IsMyNodeTaken reports whether this node's status is taken.
func (n *Node) IsMyNodeTaken() bool { return n.mc.Self().Status == mars.StatusTaken }

// GetMyEndPoint returns this node's mesh address, the one other nodes send to.
func (n *Node) GetMyEndPoint() string { return n.selfStr }

// GetMyNodeEndPoint returns this node's public endpoint.
func (n *Node) GetMyNodeEndPoint() string { return n.mc.Self().EndPoint }

// GetMyNodeType returns this node's type.
func (n *Node) GetMyNodeType() string { return n.mc.Self().Type }

// GetNodeType returns this node's type.
func (n *Node) GetNodeType() string { return n.mc.Self().Type }

// GetNodeRole returns this node's role.
func (n *Node) GetNodeRole() string { return n.mc.Self().Role }

// GetMyNodeValue returns one of this node's metadata values.
func (n *Node) GetMyNodeValue(name string) interface{} { return n.mc.Self().Values[name] }

// SetNodeType changes this node's type; other nodes see it within about 2 s.
func (n *Node) SetNodeType(nodeType string) { n.logSet("type", n.mc.SetType(nodeType)) }

// SetNodeRole changes this node's role.
func (n *Node) SetNodeRole(role string) { n.logSet("role", n.mc.SetRole(role)) }

// SetNodeValue sets one metadata value (any msgpack-able value).
func (n *Node) SetNodeValue(name string, val interface{}) {
	n.logSet("value "+name, n.mc.SetValue(name, val))
}

// SetStatus sets this node's status: StatusOnline, StatusOffline or StatusTaken.
func (n *Node) SetStatus(status int) { n.logSet("status", n.mc.SetStatus(mars.Status(status))) }

// SetEndPoint sets this node's public endpoint.
func (n *Node) SetEndPoint(endPoint string) { n.logSet("endpoint", n.mc.SetEndPoint(endPoint)) }

// SetAppName moves the node into another MARS namespace.
func (n *Node) SetAppName(name string) { n.logSet("app name", n.mc.SetApp(name)) }

func (n *Node) logSet(what string, err error) {
	if err != nil {
		n.log.Warn("mesh: setting "+what+" failed", "err", err)
	}
}

// GetSharedData returns a shared counter from the local view.
func (n *Node) GetSharedData(key string) (int16, bool) { return n.mc.View().SharedData(key) }

// SetSharedData sets a shared counter cluster-wide (key of 1 to 54 bytes);
// it returns false on a bad key. Concurrent writers race: the last one
// MARS applies wins.
func (n *Node) SetSharedData(key string, value int16) bool {
	err := n.mc.SetSharedData(key, value)
	n.logSet("shared data "+key, err)
	return err == nil
}

// AddSharedData adds delta to a shared counter cluster-wide (a missing key
// counts as 0; int16 arithmetic wraps); it returns false on a bad key.
// Unlike GetSharedData followed by SetSharedData, concurrent adds from any
// nodes are never lost: MARS applies each exactly once. It is an addition
// to the Diarkis API.
func (n *Node) AddSharedData(key string, delta int16) bool {
	err := n.mc.AddSharedData(key, delta)
	n.logSet("shared data "+key, err)
	return err == nil
}

// RemoveSharedData removes a shared counter cluster-wide.
func (n *Node) RemoveSharedData(key string) bool {
	err := n.mc.RemoveSharedData(key)
	n.logSet("shared data "+key, err)
	return err == nil
}

// OnSharedDataUpdate registers a callback for shared data set anywhere. It
// runs on the node's dispatcher, in order; behind, it gets the latest value
// of each key.
func (n *Node) OnSharedDataUpdate(cb func(string, int16)) { n.mc.OnSharedDataUpdate(cb) }

// OnSharedDataRemove registers a callback for shared data removed anywhere
// (on the node's dispatcher, in order).
func (n *Node) OnSharedDataRemove(cb func(string)) { n.mc.OnSharedDataRemove(cb) }

// RemoveOnSharedDataUpdate removes a callback given to OnSharedDataUpdate.
func (n *Node) RemoveOnSharedDataUpdate(cb func(string, int16)) { n.mc.RemoveOnSharedDataUpdate(cb) }

// RemoveOnSharedDataRemove removes a callback given to OnSharedDataRemove.
func (n *Node) RemoveOnSharedDataRemove(cb func(string)) { n.mc.RemoveOnSharedDataRemove(cb) }

// OnUpdate registers a callback run for each sync with MARS, before that
// sync's OnUpdated callbacks. Like every callback it runs on the node's
// dispatcher, never on the MARS sync loop, so the sync has been applied
// when it runs; a callback that blocks delays the other OnUpdate and
// OnUpdated callbacks (which then run once for the syncs they missed), not
// the syncs.
func (n *Node) OnUpdate(handler func()) { n.mc.OnUpdate(handler) }

// OnUpdated registers a callback run after each sync with MARS is applied
// (on the node's dispatcher; see OnUpdate).
func (n *Node) OnUpdated(handler func()) { n.mc.OnUpdated(handler) }
