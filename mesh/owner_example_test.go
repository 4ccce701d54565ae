package mesh_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
)

// Rooms live on the node that owns their key: a lobby routes a join to the
// owner with SendRPCToOwner, the owner holds the room, and when it shuts
// down its Hold callback names the node to hand the room to.
func ExampleNode_SendRPCToOwner() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	const cmdJoin = 1
	handedOff := make(chan string, 1)
	var rooms [2]*mesh.Node
	for i := range rooms {
		n, err := mesh.New(cfg, mesh.WithType("room"), mesh.WithLogger(quietLog))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer n.Shutdown()
		var mu sync.Mutex
		hosted := map[string]func(){} // room -> release its hold
		n.HandleRPC(cmdJoin, func(data []byte, _ string) ([]byte, error) {
			room := string(data)
			mu.Lock()
			defer mu.Unlock()
			if hosted[room] == nil { // first join: create the room, and hold its key
				hosted[room] = n.Hold("room", room, func(room, newOwner string) {
					// Runs on n's dispatcher: send the room's state to newOwner
					// (e.g. over a stream), then forget it here.
					handedOff <- newOwner
				})
			}
			return []byte(n.GetMyEndPoint()), nil
		})
		rooms[i] = n
	}
	lobby, err := mesh.New(cfg, mesh.WithType("lobby"), mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lobby.Shutdown()
	for _, n := range []*mesh.Node{lobby, rooms[0], rooms[1]} {
		for len(n.GetNodeAddressesByType("room")) < 2 { // both rooms online in every view
			time.Sleep(10 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	host, err := lobby.SendRPCToOwner(ctx, "room", "room/42", cmdJoin, []byte("room/42"))
	if err != nil {
		fmt.Println(err)
		return
	}
	owner, _ := lobby.Owner("room", "room/42")
	fmt.Println("served by its owner:", string(host) == owner)

	// The owner shuts down: as it starts draining, its hold names the other
	// room node as the new owner.
	other := rooms[0]
	if other.GetMyEndPoint() == owner {
		other = rooms[1]
	}
	for _, n := range rooms {
		if n.GetMyEndPoint() == owner {
			go n.Shutdown()
		}
	}
	fmt.Println("handed off to the other room node:", <-handedOff == other.GetMyEndPoint())
	// Output:
	// served by its owner: true
	// handed off to the other room node: true
}
