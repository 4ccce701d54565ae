package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/marsmesh/marsmesh/mesh"
	"github.com/marsmesh/marsmesh/td"
)

// statsData is the schema of a cmdStats answer; sender and receiver
// define it identically, and the packed form carries only the values.
var statsData = td.DefineTransportData([]td.Property{
	{Name: "counterTotal", Type: td.Int},
	{Name: "counterMessages", Type: td.Int},
	{Name: "broadcasts", Type: td.Int},
})

// stats is a decoded cmdStats answer.
type stats struct {
	CounterTotal, CounterMessages, Broadcasts int64
}

// Command IDs of the example handlers every node serves. RPC handlers
// (SendRPC) and command handlers (Send, USend, SendMany, SendRequest) are
// separate tables in the mesh, so the IDs only need to be unique per table.
const (
	// cmdEcho (RPC) answers with the request bytes unchanged.
	cmdEcho uint16 = 1
	// cmdStats (RPC) answers with the handlers' counts as a statsData
	// record (td: schema-defined, no field names on the wire).
	cmdStats uint16 = 2
	// cmdChain (RPC) passes the request along a chain of nodes: the data
	// is their comma-separated addresses; a node calls the first with the
	// rest (with its handler's context, so one trace follows the chain)
	// and answers with its own address and the answer, the last one with
	// its address.
	cmdChain uint16 = 3
	// cmdCount (command) adds the message's "add" field (default 1) to the
	// node's counter; a SendRequest gets {"count": total} back.
	cmdCount uint16 = 10
	// cmdBroadcast (command) receives fan-out broadcasts
	// ({"text": ...}) and counts them.
	cmdBroadcast uint16 = 11
)

// registrar is what handlers are registered on: a *mesh.Node, or the
// package-level default node (meshDefault).
type registrar interface {
	HandleRPC(cmd uint16, h func(data []byte, senderAddr string) ([]byte, error)) bool
	HandleRPCWithContext(cmd uint16, h func(ctx context.Context, data []byte, senderAddr string) ([]byte, error)) bool
	SendRPCWithContext(ctx context.Context, cmd uint16, addr string, data []byte) ([]byte, error)
	GetMyEndPoint() string
	HandleCommand(cmd uint16, h func(requestData map[string]interface{}) ([]byte, error)) bool
}

// meshDefault registers on the node mesh.Setup makes (before or after Setup).
type meshDefault struct{}

func (meshDefault) HandleRPC(cmd uint16, h func([]byte, string) ([]byte, error)) bool {
	return mesh.HandleRPC(cmd, h)
}

func (meshDefault) HandleRPCWithContext(cmd uint16, h func(context.Context, []byte, string) ([]byte, error)) bool {
	return mesh.HandleRPCWithContext(cmd, h)
}

func (meshDefault) SendRPCWithContext(ctx context.Context, cmd uint16, addr string, data []byte) ([]byte, error) {
	return mesh.SendRPCWithContext(ctx, cmd, addr, data)
}

func (meshDefault) GetMyEndPoint() string { return mesh.GetMyEndPoint() }

func (meshDefault) HandleCommand(cmd uint16, h func(map[string]interface{}) ([]byte, error)) bool {
	mesh.HandleCommand(cmd, h)
	return !mesh.IsCommandDuplicate(cmd)
}

// handlers is the state of one node's example handlers.
type handlers struct {
	log *slog.Logger

	countMu  sync.Mutex
	total    int64 // sum of every "add"
	messages int64 // counter messages handled

	broadcasts    atomic.Int64
	lastBroadcast atomic.Pointer[string]
}

func newHandlers(log *slog.Logger) *handlers { return &handlers{log: log} }

// register installs the echo, stats and chain RPCs, the counter and the broadcast receiver;
// it reports false if one of the IDs was taken already.
func (h *handlers) register(r registrar) bool {
	ok := r.HandleRPC(cmdEcho, h.echo)
	ok = r.HandleRPC(cmdStats, h.stats) && ok
	ok = r.HandleRPCWithContext(cmdChain, func(ctx context.Context, data []byte, _ string) ([]byte, error) {
		return chain(ctx, r, data)
	}) && ok
	ok = r.HandleCommand(cmdCount, h.count) && ok
	return r.HandleCommand(cmdBroadcast, h.broadcast) && ok
}

// chain is the cmdChain handler of the node r.
func chain(ctx context.Context, r registrar, data []byte) ([]byte, error) {
	self := r.GetMyEndPoint()
	if len(data) == 0 {
		return []byte(self), nil
	}
	next, rest, _ := strings.Cut(string(data), ",")
	resp, err := r.SendRPCWithContext(ctx, cmdChain, next, []byte(rest))
	if err != nil {
		return nil, err
	}
	return []byte(self + " " + string(resp)), nil
}

func (h *handlers) echo(data []byte, _ string) ([]byte, error) { return data, nil }

func (h *handlers) stats([]byte, string) ([]byte, error) {
	total, msgs := h.counter()
	rec := statsData.New()
	err := errors.Join(
		rec.SetAsInt("counterTotal", total),
		rec.SetAsInt("counterMessages", msgs),
		rec.SetAsInt("broadcasts", h.broadcasts.Load()))
	if err != nil {
		return nil, err
	}
	return rec.Pack(), nil
}

// decodeStats unpacks a cmdStats answer.
func decodeStats(b []byte) (stats, error) {
	rec := statsData.New()
	if err := rec.Unpack(b); err != nil {
		return stats{}, err
	}
	var s stats
	s.CounterTotal, _ = rec.GetAsInt("counterTotal")
	s.CounterMessages, _ = rec.GetAsInt("counterMessages")
	s.Broadcasts, _ = rec.GetAsInt("broadcasts")
	return s, nil
}

func (h *handlers) count(m map[string]interface{}) ([]byte, error) {
	add := int64(1)
	if _, ok := m["add"]; ok {
		add = mesh.GetInt64(m, "add")
	}
	h.countMu.Lock()
	h.total += add
	h.messages++
	total := h.total
	h.countMu.Unlock()
	h.log.Debug("counter", "add", add, "total", total)
	return mesh.CreateReturnBytes(map[string]interface{}{"count": total})
}

// counter returns the counter's total and the number of messages counted.
func (h *handlers) counter() (total, messages int64) {
	h.countMu.Lock()
	defer h.countMu.Unlock()
	return h.total, h.messages
}

func (h *handlers) broadcast(m map[string]interface{}) ([]byte, error) {
	text := mesh.GetString(m, "text")
	h.lastBroadcast.Store(&text)
	n := h.broadcasts.Add(1)
	h.log.Info("broadcast received", "text", text, "received", n)
	return nil, nil
}
