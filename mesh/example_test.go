package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

// quietLog keeps the examples' output to what they print.
var quietLog = slog.New(slog.DiscardHandler)

// startMARS runs a MARS registry in this process on a free loopback port
// and returns it with a node configuration that points at it. In
// production MARS is the mars-server program.
func startMARS() (*mars.Server, config.Mesh, error) {
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quietLog})
	if err != nil {
		return nil, config.Mesh{}, err
	}
	cfg := config.Default()
	cfg.Port = "0" // any free port
	cfg.MarsPort = strconv.Itoa(int(srv.Addr().Port()))
	return srv, cfg, nil
}

// New builds independent nodes; here two of them, and an RPC from one to
// the other.
func ExampleNew() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	lobby, err := mesh.New(cfg, mesh.WithType("lobby"), mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lobby.Shutdown()
	game, err := mesh.New(cfg, mesh.WithType("game"), mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer game.Shutdown()

	const greet = 1
	game.HandleRPC(greet, func(data []byte, senderAddr string) ([]byte, error) {
		return append([]byte("hello, "), data...), nil
	})
	<-lobby.Ready() // synced with MARS: part of the cluster

	resp, err := lobby.SendRPC(greet, game.GetMyEndPoint(), []byte("lobby"))
	fmt.Println(string(resp), err)
	// Output: hello, lobby <nil>
}

// SendMany reaches every node of a list along a tree: here the sender
// sends to at most 2 nodes, which relay to the rest.
func ExampleNode_SendMany() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	sender, err := mesh.New(cfg, mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sender.Shutdown()

	const announce = 10
	var mu sync.Mutex
	got := make(map[string]string)
	var addrs []string
	for range 4 {
		n, err := mesh.New(cfg, mesh.WithLogger(quietLog))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer n.Shutdown()
		addr := n.GetMyEndPoint()
		n.HandleCommand(announce, func(data map[string]interface{}) ([]byte, error) {
			mu.Lock()
			got[addr] = mesh.GetString(data, "text")
			mu.Unlock()
			return nil, nil
		})
		addrs = append(addrs, addr)
	}

	// SendMany returns once every node has the message (or is known to be
	// unreachable); handlers then run on each node.
	err = sender.SendMany(announce, addrs, map[string]interface{}{"text": "maintenance at 3:00"}, 2)
	fmt.Println("SendMany:", err)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == len(addrs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("%d nodes got %q\n", len(got), got[addrs[3]])
	// Output:
	// SendMany: <nil>
	// 4 nodes got "maintenance at 3:00"
}

// The package-level flow of a game server: handlers first, then Setup
// (configured by a JSON file and DIARKIS_* environment variables), then
// messages, then Shutdown.
func ExampleSetup() {
	srv, _, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	// Setup("") reads no file: defaults plus DIARKIS_* variables.
	restore := setenv(map[string]string{
		"DIARKIS_MARS_ADDR": "127.0.0.1",
		"DIARKIS_MARS_PORT": strconv.Itoa(int(srv.Addr().Port())),
		"DIARKIS_PORT":      "0",
	})
	defer restore()

	const whoAmI = 7100
	mesh.HandleRPC(whoAmI, func(data []byte, senderAddr string) ([]byte, error) {
		return []byte("type " + mesh.GetNodeType()), nil
	})
	mesh.SetNodeType("matchmaker")
	ready := make(chan struct{})
	mesh.OnReady(func() { close(ready) })

	if err := mesh.Setup(""); err != nil {
		fmt.Println(err)
		return
	}
	defer mesh.Shutdown()
	<-ready

	resp, err := mesh.SendRPC(whoAmI, mesh.GetMyEndPoint(), nil)
	fmt.Println(string(resp), err)
	fmt.Println(mesh.Shutdown(), mesh.Shutdown()) // safe twice
	// Output:
	// type matchmaker <nil>
	// <nil> <nil>
}

// setenv sets environment variables and returns a function that restores
// them.
func setenv(vars map[string]string) (restore func()) {
	old := make(map[string]*string)
	for k, v := range vars {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		os.Setenv(k, v)
	}
	return func() {
		for k, v := range old {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}
}

// Errors from SendRPC (and SendRequest) are classified by predicates; a
// handler's error reaches the caller with its message.
func ExampleIsRequestError() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	node, err := mesh.New(cfg, mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown()
	const (
		join = 1
		slow = 2
	)
	node.HandleRPC(join, func(data []byte, senderAddr string) ([]byte, error) {
		return nil, errors.New("room is full")
	})
	node.HandleRPCWithContext(slow, func(ctx context.Context, data []byte, senderAddr string) ([]byte, error) {
		<-ctx.Done() // the caller's deadline travels with the request
		return nil, ctx.Err()
	})
	<-node.Ready()
	self := node.GetMyEndPoint()

	_, err = node.SendRPC(join, self, nil)
	var remote *mesh.RemoteError
	if mesh.IsRequestError(err) && errors.As(err, &remote) {
		fmt.Println("handler error:", remote.Message)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = node.SendRPCWithContext(ctx, slow, self, nil)
	fmt.Println("timed out:", mesh.IsRequestTimeoutError(err))

	_, err = node.SendRPC(join, self, make([]byte, mesh.MaxMessageSize+1))
	fmt.Println("not sent:", mesh.IsSendError(err))
	// Output:
	// handler error: room is full
	// timed out: true
	// not sent: true
}

// The getters read fields of a decoded message; a missing field or a
// value of the wrong type gives the zero value, never a panic.
func ExampleGetInt() {
	data := map[string]interface{}{"level": int64(12), "name": "ada", "ratio": 0.5}
	fmt.Println(mesh.GetInt(data, "level"), mesh.GetUint8(data, "level"), mesh.GetString(data, "name"))
	fmt.Println(mesh.GetInt(data, "name"), mesh.GetInt(data, "missing"), mesh.GetBool(data, "level"), mesh.GetFloat64(data, "ratio"))
	// Output:
	// 12 12 ada
	// 0 0 false 0.5
}

// A command handler answers SendRequest with bytes made by
// CreateReturnBytes; the caller gets them back as a map.
func ExampleCreateReturnBytes() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	node, err := mesh.New(cfg, mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown()
	const double = 20
	node.HandleCommand(double, func(req map[string]interface{}) ([]byte, error) {
		return mesh.CreateReturnBytes(map[string]interface{}{"result": mesh.GetInt(req, "n") * 2})
	})
	<-node.Ready()

	type request struct {
		N int `json:"n"`
	}
	done := make(chan struct{})
	node.SendRequest(double, node.GetMyEndPoint(), &request{N: 21}, func(err error, resp map[string]interface{}) {
		fmt.Println(mesh.GetInt(resp, "result"), err)
		close(done)
	})
	<-done
	// Output: 42 <nil>
}
